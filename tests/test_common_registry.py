import pytest
import torch
from torch import nn

import manifold_mixup.gan.nets  # noqa: F401  registers the SNGAN networks
from manifold_mixup.common.config import UsageError
from manifold_mixup.common.registry import ARCHS, PREFIXES, Arch, build, register, register_prefix, spec


def test_a_spec_rebuilds_the_network_it_names():
    args = spec("sngan_generator", z_dim=4, channels=8, bottom=2, blocks=1, out_channels=1)
    G = build(args)
    assert G(torch.zeros(2, 4)).shape == (2, 1, 4, 4)


def test_an_unknown_name_is_one_line_listing_the_valid_ones():
    with pytest.raises(UsageError, match="unknown architecture 'nope'.*sngan_generator") as e:
        build(spec("nope"))
    assert "\n" not in str(e.value)


def test_a_name_cannot_be_registered_twice_and_a_prefix_resolves(monkeypatch):
    monkeypatch.setitem(ARCHS, "tiny-test", Arch(nn.Linear, "tiny-test"))
    with pytest.raises(ValueError):
        register("tiny-test")(nn.Identity)
    monkeypatch.setattr("manifold_mixup.common.registry.PREFIXES", dict(PREFIXES))
    register_prefix("lib", lambda name: {"linear": nn.Linear}.get(name))
    assert isinstance(build(spec("lib:linear", in_features=2, out_features=3)), nn.Linear)
    with pytest.raises(UsageError, match="lib:NAME"):
        build(spec("lib:other"))


def test_a_recipe_stores_its_constructor_and_full_arguments_so_a_checkpoint_needs_no_recipe():
    import manifold_mixup.classifiers.recipes  # noqa: F401  registers the classifier recipes
    from manifold_mixup.common.registry import get_arch, recipe_spec

    args = recipe_spec("wrn28_10", num_classes=10, in_channels=3)
    assert args["arch"] == "wrn" and args["args"]["width"] == 10 and args["args"]["leaky_slope"] == 0.0
    assert get_arch("wrn28_10").paper_mix_points == ("pixel", "h1")
    with pytest.raises(UsageError, match="unknown architecture 'sngan_generator'.*wrn28_10"):
        get_arch("sngan_generator")  # registered, but not a classifier
