import re

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torch._dynamo.utils import counters
from torchvision.models.feature_extraction import create_feature_extractor

from manifold_mixup.classifiers.wrn import WideResNet
from manifold_mixup.common.config import UsageError
from manifold_mixup.common.layers import LayerMixup, check_layers, replace_output
from manifold_mixup.common.mixup import Mix, mix, sample_mix
from manifold_mixup.common.staged import StagedNet

from conftest import ROOT


def resnet18_cifar() -> nn.Module:
    """torchvision's ResNet-18 with the CIFAR stem: a 3x3 stride-1 first convolution and no max pool."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1, model.maxpool = nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.Identity()
    return model


def fixed_mix(point: int, batch: int = 4, per_example: bool = False) -> Mix:
    lam = (torch.linspace(0.2, 0.9, batch) if per_example else torch.tensor(0.3)).double()
    return Mix(point=point, lam=lam, perm=torch.roll(torch.arange(batch), 1))


def images(batch: int = 4, size: int = 32) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch, 3, size, size, generator=g), F.one_hot(torch.arange(batch) % 10, 10).float()


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


# --- names -------------------------------------------------------------------------------------------------------


def test_unknown_layer_names_the_closest_valid_ones_and_input():
    model = resnet18_cifar()
    with pytest.raises(UsageError) as e:
        LayerMixup(model, ["input", "layer5"])
    message = one_line_error(e)
    assert "'layer5'" in message and "layer1" in message and "'input'" in message
    with pytest.raises(UsageError) as e:
        check_layers(model, "zzz")  # nothing close: the top-level modules are listed instead
    assert "conv1" in one_line_error(e) and "layer4" in str(e.value)
    assert check_layers(model, "pixel, layer1,input,layer2.1") == ("input", "layer1", "layer2.1")
    with pytest.raises(UsageError, match="no mixing layer"):
        check_layers(model, "")


# --- equal to a hand-written split ----------------------------------------------------------------------------


def test_resnet18_mixed_at_layer2_equals_a_hand_split_and_the_gradient_reaches_the_stem():
    model, (x, y) = resnet18_cifar(), images()
    mixer = LayerMixup(model, ["input", "layer1", "layer2"])
    m = fixed_mix(mixer.names.index("layer2"))

    logits, y_mixed = mixer(x, y, m)
    logits.sum().backward()
    grad = model.conv1.weight.grad.clone()
    model.zero_grad()

    h = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    h = model.layer2(model.layer1(h))
    h = mix(h, h[m.perm], m.lam)
    expected = model.fc(torch.flatten(model.avgpool(model.layer4(model.layer3(h))), 1))
    expected.sum().backward()

    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(y_mixed, 0.3 * y + 0.7 * y[m.perm])
    assert grad.abs().sum() > 0
    torch.testing.assert_close(grad, model.conv1.weight.grad)
    # The split really mixed: without the mix the logits differ.
    assert not torch.allclose(logits, model(x))


def test_mobilenet_mixed_at_a_feature_block_equals_a_hand_split():
    torch.manual_seed(0)
    model, (x, y) = torchvision.models.mobilenet_v3_small(num_classes=10), images()
    mixer = LayerMixup(model, ["input", "features.4"])
    m = fixed_mix(1, per_example=True)

    torch.manual_seed(5)  # the classifier's dropout draws the same mask in both runs
    logits, _ = mixer(x, y, m)
    torch.manual_seed(5)
    h = model.features[:5](x)
    h = model.features[5:](mix(h, h[m.perm], m.lam))
    expected = model.classifier(torch.flatten(model.avgpool(h), 1))

    torch.testing.assert_close(logits, expected)
    logits.sum().backward()
    assert model.features[0][0].weight.grad.abs().sum() > 0
    # At the input the mixer mixes the images themselves.
    torch.manual_seed(5)
    at_input, _ = mixer(x, y, fixed_mix(0, per_example=True))
    torch.manual_seed(5)
    torch.testing.assert_close(at_input, model(mix(x, x[m.perm], m.lam)))


# --- refused layers ----------------------------------------------------------------------------------------------


def test_a_module_that_runs_twice_is_refused_during_the_forward_and_the_hook_is_disarmed():
    model, (x, y) = resnet18_cifar(), images(2, 16)
    model.eval()
    with torch.no_grad():
        plain = model(x)
    mixer = LayerMixup(model, ["layer1", "layer1.0.relu"])  # BasicBlock calls its one relu twice
    with pytest.raises(UsageError) as e, torch.no_grad():
        mixer(x, y, fixed_mix(1, 2))
    message = one_line_error(e)
    assert "'layer1.0.relu'" in message and "more than once" in message and "'layer1.0'" in message
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain)  # nothing is left replacing the output
        torch.testing.assert_close(mixer(x, y, Mix(0, torch.tensor(1.0), torch.arange(2)))[0], plain)


def test_a_module_that_never_runs_is_refused():
    torch.manual_seed(0)
    model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False, num_classes=10).eval()
    x, y = images(2)
    mixer = LayerMixup(model, ["inception3a", "aux1"])  # the auxiliary head runs only in training mode
    with pytest.raises(UsageError) as e, torch.no_grad():
        mixer(x, y, fixed_mix(1, 2))
    message = one_line_error(e)
    assert "'aux1'" in message and "did not run" in message and "eval mode" in message
    with torch.no_grad():
        assert mixer(x, y, fixed_mix(0, 2))[0].shape == (2, 10)


class Backbone(nn.Module):
    """A detection-style model: a feature extractor that returns a dict, then a head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        net = torchvision.models.mobilenet_v3_small()
        self.backbone = create_feature_extractor(net, {"features.3": "c3"})
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 10))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x)["c3"])


class SequenceFirst(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(2).permute(2, 0, 1)  # (B, C, H, W) -> (H*W, B, C)


@pytest.mark.parametrize(
    ("make", "name", "expected"),
    [
        (
            lambda: torchvision.models.VisionTransformer(32, 8, 1, 2, 16, 32, num_classes=10),
            "encoder.layers.encoder_layer_0.self_attention",  # nn.MultiheadAttention returns a tuple
            "gives a tuple, not a tensor",
        ),
        (Backbone, "backbone", "gives a dict, not a tensor"),
        (
            lambda: nn.Sequential(nn.Conv2d(3, 4, 3, 4), SequenceFirst(), nn.Flatten()),
            "1",
            "shape (64, 2, 4) whose first dimension is not the batch (2)",
        ),
    ],
)
def test_an_output_that_is_not_a_batch_tensor_is_refused(make, name, expected):
    model, (x, y) = make(), images(2)
    with pytest.raises(UsageError) as e:
        LayerMixup(model, ["input", name])(x, y, fixed_mix(1, 2))
    message = one_line_error(e)
    assert f"{name!r}" in message and expected in message


class Failing(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        raise RuntimeError("boom")


def test_hooks_are_disarmed_when_the_forward_raises_and_nested_blocks_on_a_layer_are_refused():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x = torch.randn(4, 3)
    plain = model(x)
    with pytest.raises(RuntimeError, match="boom"), replace_output(model, "1", lambda h: Failing()(h)):
        model(x)
    torch.testing.assert_close(model(x), plain)
    with pytest.raises(UsageError, match="already being replaced"):  # noqa: SIM117
        with replace_output(model, "1", lambda h: h * 0), replace_output(model, "1", lambda h: h):
            pass
    torch.testing.assert_close(model(x), plain)


def test_replace_output_can_append_mixes_to_the_batch_like_a_gan_discriminator():
    torch.manual_seed(0)
    disc = nn.Sequential(nn.Linear(3, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
    real, fake = torch.randn(4, 3), torch.randn(4, 3)
    lam = torch.tensor(0.25, dtype=torch.float64)

    def append_mixes(h: Tensor) -> Tensor:
        return torch.cat([h, mix(h[:4], h[4:], lam)])

    for name, split in [("1", 2), ("input", 0)]:
        with replace_output(disc, name, append_mixes, batch_size=8):
            out = disc(torch.cat([real, fake]))
        h = disc[:split](torch.cat([real, fake]))
        torch.testing.assert_close(out, disc[split:](append_mixes(h)))
        assert out.shape == (12, 1)


# --- the mixed forward (eq. 1) on a staged network named by its points --------------------------------------------


def tiny_net() -> StagedNet:
    torch.manual_seed(0)
    return StagedNet(
        [nn.Sequential(nn.Linear(4, 8), nn.ReLU()), nn.Sequential(nn.Linear(8, 8), nn.ReLU()), nn.Linear(8, 3)]
    )


def batch(n: int = 6) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 4, generator=g), F.one_hot(torch.arange(n) % 3, 3).float()


def test_point_names_of_a_staged_net_are_its_stage_outputs_and_an_unknown_one_lists_the_closest():
    net = tiny_net()
    assert check_layers(net, "h1,pixel,h2,h1") == ("stages.0", "input", "stages.1")
    assert LayerMixup(net, "h2,input").labels == ("h2", "input")  # logs keep the user's spelling
    with pytest.raises(UsageError) as e:
        check_layers(net, "h7")
    assert "unknown layer 'h7'" in one_line_error(e) and "h1" in str(e.value)


def test_input_point_only_is_exactly_input_mixup():
    net, (x, y) = tiny_net(), batch()
    mixer = LayerMixup(net, "pixel")
    torch.manual_seed(3)
    m = sample_mix(len(x), mixer.points, alpha=1.0)
    logits, y_mix = mixer(x, y, m)
    lam = float(m.lam)
    torch.testing.assert_close(logits, net(lam * x + (1 - lam) * x[m.perm]))
    torch.testing.assert_close(y_mix, lam * y + (1 - lam) * y[m.perm])


@pytest.mark.parametrize("point", [0, 1, 2])
def test_lam_one_is_the_identity(point):
    net, (x, y) = tiny_net(), batch()
    m = Mix(point=point, lam=torch.tensor(1.0), perm=torch.randperm(len(x)))
    logits, y_mix = LayerMixup(net, "pixel,h1,h2")(x, y, m)
    torch.testing.assert_close(logits, net(x))
    torch.testing.assert_close(y_mix, y)


def test_mixing_at_a_hidden_point_mixes_hidden_states_not_inputs():
    net, (x, y) = tiny_net(), batch()
    m = Mix(point=2, lam=torch.tensor(0.3), perm=torch.roll(torch.arange(len(x)), 1))
    logits, _ = LayerMixup(net, "pixel,h1,h2")(x, y, m)
    h = net(x, 0, 2)
    torch.testing.assert_close(logits, net(0.3 * h + 0.7 * h[m.perm], 2))
    assert not torch.allclose(logits, net(0.3 * x + 0.7 * x[m.perm]))


@pytest.mark.parametrize("point", [1, 2])
def test_gradients_reach_stages_before_the_mixing_point(point):
    net, (x, y) = tiny_net(), batch()
    m = Mix(point=point, lam=torch.tensor(0.4), perm=torch.randperm(len(x)))
    logits, y_mix = LayerMixup(net, "pixel,h1,h2")(x, y, m)
    (-(y_mix * logits.log_softmax(1)).sum(1).mean()).backward()
    for stage in net.stages[:point]:
        for p in stage.parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0


def test_per_example_lam_mixes_each_row_with_its_own_weight():
    net, (x, y) = tiny_net(), batch()
    mixer = LayerMixup(net, "h1")
    torch.manual_seed(0)
    m = sample_mix(len(x), mixer.points, alpha=1.0, per_example=True)
    assert m.lam.shape == (len(x),) and len(set(m.lam.tolist())) == len(x)
    logits, y_mix = mixer(x, y, m)
    h = net(x, 0, 1)
    for i in range(len(x)):
        lam = m.lam[i]
        expected = net((lam * h[i] + (1 - lam) * h[m.perm[i]])[None], 1)[0]
        torch.testing.assert_close(logits[i], expected)
        torch.testing.assert_close(y_mix[i], lam * y[i] + (1 - lam) * y[m.perm[i]])


# --- torch.compile -----------------------------------------------------------------------------------------------


class CountingBackend:
    def __init__(self):
        self.graphs = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list) -> object:
        self.graphs += 1
        return gm.forward


def test_compiled_model_gives_one_graph_per_layer_no_graph_break_and_the_eager_result():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()), nn.Flatten()
    )
    x, y = images(4, 4)
    backend = CountingBackend()
    torch._dynamo.reset()
    counters.clear()
    mixer = LayerMixup(torch.compile(model, backend=backend), ["input", "1", "2"])
    eager = LayerMixup(model, ["input", "1", "2"])
    for step in range(6):  # every layer twice, with new λ and permutations the second time
        m = Mix(step % 3, torch.tensor(0.1 + 0.1 * step, dtype=torch.float64), torch.randperm(4))
        out, _ = mixer(x, y, m)
        torch.testing.assert_close(out, eager(x, y, m)[0])
    assert backend.graphs == 3  # idle hooks (mix at the input), armed at "1", armed at "2"; no recompilation
    assert not counters["graph_break"] and not counters["unimplemented"]
    assert counters["stats"]["unique_graphs"] == 3


def test_wrapped_models_are_named_by_their_inner_model_and_a_layer_named_after_compiling_is_refused():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x, y, m = torch.randn(4, 3), torch.eye(4), fixed_mix(1)
    expected = LayerMixup(model, ["input", "1"])(x, y, m)[0]
    wrapped = LayerMixup(nn.DataParallel(model), "pixel,1")  # not "module.1"
    assert wrapped.names == ("input", "1")
    torch.testing.assert_close(wrapped(x, y, m)[0], expected)

    late = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    compiled = torch.compile(late, backend=CountingBackend())
    compiled(x)  # the graph is made before any layer of `late` is named: it never calls a hook added now
    with pytest.raises(UsageError) as e:
        LayerMixup(compiled, ["0"])(x, y, fixed_mix(0))
    assert "did not run" in one_line_error(e) and "named before its first forward" in str(e.value)


# --- the staged path ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("point", "per_example"), [(0, False), (1, False), (2, True)])
def test_wide_resnet_mixed_at_its_stage_modules_equals_the_staged_path(point, per_example):
    """WRN-28-2: the hooks give the logits and gradients of running the stages before k, mixing, and the rest."""
    torch.manual_seed(0)
    net = WideResNet(depth=28, width=2)
    x, y = images(4, 16)
    m = fixed_mix(point, per_example=per_example)

    h = net(x, 0, point)  # the staged path, written out: stages 0..k-1, mix, stages k..
    staged_logits = net(mix(h, h[m.perm], m.lam), point)
    staged_y = mix(y, y[m.perm], m.lam)
    (staged_logits * torch.arange(10)).sum().backward()
    staged_grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()

    mixer = LayerMixup(net, ["input", "stages.0", "stages.1"])  # the outputs of stages 1 and 2 are h1 and h2
    assert mixer.names == LayerMixup(net, "pixel,h1,h2").names
    logits, y_mixed = mixer(x, y, m)
    (logits * torch.arange(10)).sum().backward()

    torch.testing.assert_close(logits, staged_logits)
    torch.testing.assert_close(y_mixed, staged_y)
    for p, g in zip(net.parameters(), staged_grads):
        torch.testing.assert_close(p.grad, g)


# --- README ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("page", "heading"), [("README.md", "## Any model, in ten lines"), ("docs/models.md", "# Bring your own network")]
)
def test_the_any_model_examples_run_as_written(page, heading):
    text = (ROOT / page).read_text()
    section = text.split(f"\n{heading}\n", 1)[1] if heading.startswith("## ") else text.split(f"{heading}\n", 1)[1]
    code = re.search(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.S).group(1)
    assert "LayerMixup" in code and "resnet18" in code
    namespace: dict = {}
    exec(compile(code, page, "exec"), namespace)
    assert torch.isfinite(namespace["loss"])
    assert namespace["model"].conv1.weight.grad.abs().sum() > 0
