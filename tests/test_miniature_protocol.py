"""The miniature protocol's recipe and budget: AdamW, run as stated, its accuracy shown (smoke's is not)."""

from dataclasses import replace

import pytest
import torch

from alignbench.bench.recipes import BUDGETS, RECIPES, training_config
from alignbench.bench.train import make_optimizer


def test_the_miniature_budget_runs_its_recipe_as_stated():
    assert training_config("miniature", "miniature") == RECIPES["miniature"]
    assert RECIPES["miniature"].optimizer == "adamw" and RECIPES["fapn_semantic"].optimizer == "sgd"


def test_only_the_smoke_budget_says_nothing_about_accuracy():
    assert [name for name, budget in BUDGETS.items() if not budget.measures_accuracy] == ["smoke"]


def test_the_recipe_chooses_the_optimizer():
    parameters = [torch.nn.Parameter(torch.zeros(3))]
    assert isinstance(make_optimizer(parameters, RECIPES["miniature"]), torch.optim.AdamW)
    sgd = make_optimizer(parameters, RECIPES["sfnet"])
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        make_optimizer(parameters, replace(RECIPES["sfnet"], optimizer="lion"))
