"""Feature networks with random weights: forward shapes, exact weight-file key layouts, loaders."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from latte.io import WeightsError
from latte.metrics.networks.c3d import C3D, C3D_LAYERS, load_c3d
from latte.metrics.networks.i3d import InceptionI3d, Unit3D, load_i3d
from latte.metrics.networks.inception import FIDInceptionV3, load_inception
from latte.metrics.networks.resize import resize_bilinear

BN = ("weight", "bias", "running_mean", "running_var")


def _weights_only(state):
    return {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}


def _expected_i3d_keys():
    """The 287 tensors of i3d_pretrained_400.pt, written out from the published layer list (spec §2.2)."""
    keys = []
    for unit in ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"):
        keys += [f"{unit}.conv3d.weight"] + [f"{unit}.bn.{p}" for p in BN]
    for mixed in ("3b", "3c", "4b", "4c", "4d", "4e", "4f", "5b", "5c"):
        for branch in ("b0", "b1a", "b1b", "b2a", "b2b", "b3b"):
            keys += [f"Mixed_{mixed}.{branch}.conv3d.weight"] + [f"Mixed_{mixed}.{branch}.bn.{p}" for p in BN]
    return keys + ["logits.conv3d.weight", "logits.conv3d.bias"]


def test_i3d_state_dict_layout_matches_weight_file():
    shapes = _weights_only(InceptionI3d().state_dict())
    expected = _expected_i3d_keys()
    assert len(expected) == 287
    assert sorted(shapes) == sorted(expected)
    assert shapes["Conv3d_1a_7x7.conv3d.weight"] == (64, 3, 7, 7, 7)
    assert shapes["Conv3d_2b_1x1.conv3d.weight"] == (64, 64, 1, 1, 1)
    assert shapes["Conv3d_2c_3x3.conv3d.weight"] == (192, 64, 3, 3, 3)
    assert shapes["Mixed_3b.b0.conv3d.weight"] == (64, 192, 1, 1, 1)
    assert shapes["Mixed_3b.b1b.conv3d.weight"] == (128, 96, 3, 3, 3)
    assert shapes["Mixed_5c.b3b.conv3d.weight"] == (128, 832, 1, 1, 1)
    assert shapes["logits.conv3d.weight"] == (400, 1024, 1, 1, 1) and shapes["logits.conv3d.bias"] == (400,)
    assert sum(np.prod(s) for k, s in shapes.items() if "running" not in k) == pytest.approx(12.7e6, rel=0.02)
    assert InceptionI3d().Conv3d_1a_7x7.bn.eps == 1e-3


@pytest.mark.parametrize("kernel,stride", [(1, 1), (3, 1), (7, 2), (2, 2), (3, 2)])
def test_i3d_same_padding_gives_ceil_output_sizes(kernel, stride):
    unit = Unit3D(1, 1, (kernel,) * 3, (stride,) * 3, batch_norm=False)
    for size in (7, 8, 9, 13, 14):
        out = unit(torch.zeros(1, 1, size, size, size))
        assert out.shape[2:] == (-(-size // stride),) * 3
    # k=7, s=2 on an even size pads 2 before and 3 after (TF SAME), not 3/3
    unit = Unit3D(1, 1, (1, 1, 7), (1, 1, 2), batch_norm=False)
    torch.nn.init.zeros_(unit.conv3d.weight)
    unit.conv3d.weight.data[..., 0] = 1.0  # picks the first tap: output[i] = padded[2 i]
    x = torch.arange(1, 9, dtype=torch.float32).view(1, 1, 1, 1, 8)
    assert unit(x).flatten().tolist() == [0.0, 1.0, 3.0, 5.0]  # 2 leading zeros; 3 would give [0, 0, 2, 4]


def test_i3d_forward_shapes_and_min_frames(tmp_path):
    model = InceptionI3d().eval()
    with torch.no_grad():
        x = torch.rand(1, 3, 16, 224, 224) * 2 - 1
        pool = model.forward_pool(x)
        assert pool.shape == (1, 1024, 2, 7, 7)
        assert model(x).shape == (1, 400)
        with pytest.raises(ValueError, match="9 frames"):
            model(torch.zeros(1, 3, 8, 224, 224))


def test_i3d_loads_converted_state_dict_strictly_and_torchscript(tmp_path):
    source = InceptionI3d()
    for p in source.parameters():
        p.data.normal_(0, 0.01)
    # converted files carry neither num_batches_tracked nor _metadata
    state = {k: v.clone() for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "i3d_pretrained_400.pt")
    detector = load_i3d(tmp_path / "i3d_pretrained_400.pt")
    assert detector.identity()["format"] == "state_dict" and len(detector.identity()["sha256"]) == 64
    torch.testing.assert_close(detector.network.logits.conv3d.weight, source.logits.conv3d.weight)
    bad = dict(state)
    bad["Mixed_3b.b0.conv3d.weight"] = torch.zeros(1)
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="wrong shape: Mixed_3b.b0"):
        load_i3d(tmp_path / "bad.pt")

    class FakeTorchScriptI3D(torch.nn.Module):  # the signature of StyleGAN-V's i3d_torchscript.pt
        def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                    return_features: bool = False) -> torch.Tensor:
            flags = torch.tensor([float(rescale), float(resize), float(return_features), float(x.dtype == torch.uint8)])
            return flags.expand(x.shape[0], 4)

    torch.jit.save(torch.jit.script(FakeTorchScriptI3D()), str(tmp_path / "i3d_torchscript.pt"))
    detector = load_i3d(tmp_path / "i3d_torchscript.pt")
    assert detector.identity()["format"] == "torchscript"
    out = detector(torch.zeros(2, 3, 16, 32, 32, dtype=torch.uint8))
    assert out.tolist() == [[1.0, 1.0, 1.0, 1.0]] * 2
    with pytest.raises(WeightsError, match="I3D weights not found"):
        load_i3d(tmp_path / "missing.pt")


def test_fid_inception_layout_forward_and_patches(tmp_path):
    model = FIDInceptionV3().eval()
    shapes = _weights_only(model.state_dict())
    assert len(shapes) == 94 * 5 + 2  # 94 conv+BN units, plus fc
    assert shapes["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert shapes["Conv2d_4a_3x3.bn.running_var"] == (192,)
    assert shapes["Mixed_6b.branch7x7dbl_5.conv.weight"] == (192, 128, 1, 7)
    assert shapes["Mixed_7c.branch_pool.conv.weight"] == (192, 2048, 1, 1)
    assert shapes["fc.weight"] == (1008, 2048) and shapes["fc.bias"] == (1008,)
    assert not any(k.startswith("AuxLogits") for k in shapes)
    assert model.Mixed_7b.pool == "avg" and model.Mixed_7c.pool == "max"
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "pt_inception.pth")
    detector = load_inception(tmp_path / "pt_inception.pth")
    feats = detector(torch.randint(0, 256, (1, 3, 2, 64, 64), dtype=torch.uint8))
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()


def test_c3d_ceil_pooling_shapes_and_npz_loading(tmp_path):
    model = C3D().eval()
    with torch.no_grad():
        x = torch.rand(1, 3, 16, 112, 112) * 2 - 1
        assert model.features(x).shape == (1, 512, 1, 4, 4)  # floor pooling would give 3x3 (not 8192 inputs)
        assert F.max_pool3d(torch.zeros(1, 1, 2, 7, 7), 2, 2).shape[-2:] == (3, 3)
    # a Chainer-style npz (names conv1a/W ... fc8/b) and a 128x128 Caffe mean, as TGANv2 ships them
    arrays = {}
    for name, _, _ in C3D_LAYERS:
        conv = getattr(model, name)
        arrays[f"{name}/W"], arrays[f"{name}/b"] = conv.weight.detach().numpy(), conv.bias.detach().numpy()
    for name in ("fc6", "fc7", "fc8"):
        fc = getattr(model, name)
        arrays[f"{name}/W"] = fc.weight.detach().half().numpy()
        arrays[f"{name}/b"] = fc.bias.detach().numpy()
    assert arrays["fc6/W"].shape == (4096, 8192) and arrays["fc8/W"].shape == (101, 4096)
    np.savez(tmp_path / "conv3d_deepnetA_ucf.npz", **arrays)
    mean = np.random.RandomState(0).uniform(90, 130, (1, 3, 16, 128, 128)).astype(np.float32)
    np.savez(tmp_path / "mean2.npz", mean=mean)
    detector = load_c3d(tmp_path / "conv3d_deepnetA_ucf.npz")
    np.testing.assert_allclose(detector.network.mean.numpy(), mean[0, :, :, 8:120, 8:120])
    probs = detector(torch.randint(0, 256, (2, 3, 16, 64, 64), dtype=torch.uint8))
    assert probs.shape == (2, 101)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))
    del arrays["conv5b/b"]
    np.savez(tmp_path / "broken.npz", **arrays)
    with pytest.raises(ValueError, match="missing 1 key"):
        load_c3d(tmp_path / "broken.npz", mean_path=tmp_path / "mean2.npz")


def test_resize_grids():
    x = torch.arange(4, dtype=torch.float64).view(1, 4).expand(4, 4).contiguous()
    tf1 = resize_bilinear(x, (4, 8), mode="tf1")[0].tolist()
    assert tf1 == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.0]  # src = dst * in/out, edge clamped
    img = torch.rand(2, 3, 9, 13)
    torch.testing.assert_close(resize_bilinear(img, (20, 7), mode="align_corners"),
                               F.interpolate(img, (20, 7), mode="bilinear", align_corners=True))


_WEIGHTS = __import__("os").environ.get("LATTE_EVAL_WEIGHTS", "")


@pytest.mark.skipif(not _WEIGHTS, reason="set LATTE_EVAL_WEIGHTS to a folder holding i3d_pretrained_400.pt")
def test_real_i3d_constant_videos_known_answer():
    """google-research FVD example: 16 x 15 x 64 x 64 zeros vs 255 → about 131 (134 for the PyTorch port)."""
    from pathlib import Path

    from latte.metrics.frechet import frechet_distance_from_features

    detector = load_i3d(Path(_WEIGHTS) / "i3d_pretrained_400.pt")
    zeros = torch.zeros(16, 3, 15, 64, 64, dtype=torch.uint8)
    feats = [detector(v).double().numpy() for v in (zeros, zeros + 255)]
    assert frechet_distance_from_features(*feats) == pytest.approx(132.5, abs=6)
