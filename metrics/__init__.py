"""Pure metric code: semantic (mIoU, iIoU, category scores), boundary bands, COCO AP, panoptic quality.

Metrics know nothing about models or the harness; they take arrays (numpy, or torch tensors on any device)
and keep mergeable state so that shards evaluated apart combine into the same result.
"""
