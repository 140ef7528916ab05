"""Autoencoders through build_autoencoder: tiny random-weight diffusers VAEs saved to a tmp folder."""
import pytest
import torch

from latte.config import ConfigError
from latte.encoders import AutoencoderConfig, MissingWeightsError, build_autoencoder


def tiny_vae(**overrides):
    from diffusers import AutoencoderKL

    cfg = dict(block_out_channels=(8, 16), layers_per_block=1, latent_channels=4, norm_num_groups=4,
               down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
               sample_size=16)
    cfg.update(overrides)
    return AutoencoderKL(**cfg).eval()


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("pipeline") / "vae"
    tiny_vae().save_pretrained(folder)
    return folder


def video(b=2, f=3, h=16, w=16):
    return torch.rand(b, 3, f, h, w) * 2 - 1


def test_sd_vae_shapes_and_attributes(vae_dir):
    ae = build_autoencoder({"kind": "sd_vae", "path": str(vae_dir.parent), "subfolder": "vae"})
    assert (ae.latent_channels, ae.downsample_factor, ae.scaling_factor) == (4, 2, 0.18215)
    z = ae.encode(video())
    assert z.shape == (2, 4, 3, 8, 8) and z.dtype == torch.float32
    assert ae.decode(z).shape == (2, 3, 3, 16, 16)


def test_chunked_equals_unchunked(vae_dir):
    x = video(b=2, f=5)
    one = build_autoencoder({"kind": "trained", "path": str(vae_dir), "sample_posterior": False, "chunk_size": 1})
    big = build_autoencoder({"kind": "trained", "path": str(vae_dir), "sample_posterior": False, "chunk_size": 64})
    z1, z2 = one.encode(x), big.encode(x)
    torch.testing.assert_close(z1, z2, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(one.decode(z1), big.decode(z1), rtol=1e-4, atol=1e-5)


def test_scaling_factor_applied_exactly_once(vae_dir):
    from diffusers import AutoencoderKL

    raw = AutoencoderKL.from_pretrained(vae_dir).eval()
    ae = build_autoencoder({"kind": "sd_vae", "path": str(vae_dir), "sample_posterior": False,
                            "scaling_factor": 0.5})
    x = video(b=1, f=2)
    frames = x[0].transpose(0, 1)  # (F, 3, H, W)
    with torch.no_grad():
        mean = raw.encode(frames).latent_dist.mode()
        recon = raw.decode(mean).sample
    z = ae.encode(x)
    torch.testing.assert_close(z[0].transpose(0, 1), mean * 0.5, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ae.decode(z)[0].transpose(0, 1), recon, rtol=1e-4, atol=1e-5)


def test_posterior_sampling_is_selectable(vae_dir):
    x = video(b=1, f=2)
    sampled = build_autoencoder({"kind": "sd_vae", "path": str(vae_dir), "sample_posterior": True})
    mean = build_autoencoder({"kind": "sd_vae", "path": str(vae_dir), "sample_posterior": False})
    assert not torch.allclose(sampled.encode(x), mean.encode(x))
    torch.testing.assert_close(mean.encode(x), mean.encode(x))


def test_identity_records_weights(vae_dir, tmp_path):
    a = build_autoencoder({"kind": "sd_vae", "path": str(vae_dir)}).identity()
    other = tmp_path / "vae"
    torch.manual_seed(1)
    tiny_vae().save_pretrained(other)
    b = build_autoencoder({"kind": "sd_vae", "path": str(other)}).identity()
    assert a["fingerprint"] != b["fingerprint"] and a["scaling_factor"] == 0.18215
    assert a == build_autoencoder({"kind": "sd_vae", "path": str(vae_dir)}).identity()


def test_temporal_decoder_decodes_per_video_chunks(tmp_path):
    from diffusers import AutoencoderKLTemporalDecoder

    torch.manual_seed(0)
    AutoencoderKLTemporalDecoder(block_out_channels=(32, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                                 layers_per_block=1, latent_channels=4).save_pretrained(tmp_path / "vtd")
    ae = build_autoencoder({"kind": "temporal_decoder", "path": str(tmp_path), "subfolder": "vtd",
                            "chunk_size": 2, "sample_posterior": False})
    x = video(b=2, f=3)
    z = ae.encode(x)
    assert z.shape == (2, 4, 3, 8, 8)
    out = ae.decode(z)
    assert out.shape == x.shape
    # each video is decoded on its own: decoding video 1 alone gives the same frames
    torch.testing.assert_close(ae.decode(z[1:]), out[1:], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("d", [1, 2, 4])
def test_identity_autoencoder_round_trip_is_exact(d):
    ae = build_autoencoder(AutoencoderConfig(kind="identity", patch_factor=d))
    x = video(h=8, w=8)
    z = ae.encode(x)
    assert z.shape == (2, 3 * d * d, 3, 8 // d, 8 // d) and ae.latent_channels == 3 * d * d
    assert torch.equal(ae.decode(z), x)
    if d == 2:  # space-to-depth: each latent pixel holds its 2x2 block
        assert torch.equal(z[0, :, 0, 0, 0].reshape(3, 2, 2), x[0, :, 0, :2, :2])


def test_missing_folder_error_names_path_and_files(tmp_path):
    with pytest.raises(MissingWeightsError, match=str(tmp_path / "nope") + ".*config.json"):
        build_autoencoder({"kind": "sd_vae", "path": str(tmp_path / "nope")})
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text("{}")
    with pytest.raises(MissingWeightsError, match="diffusion_pytorch_model.safetensors"):
        build_autoencoder({"kind": "sd_vae", "path": str(tmp_path), "subfolder": "vae"})
    with pytest.raises(MissingWeightsError, match="weights file not found: .*x.safetensors"):
        build_autoencoder({"kind": "sd_vae", "path": str(tmp_path / "x.safetensors")})


def test_config_rejects_inconsistent_options():
    with pytest.raises(ConfigError, match="path"):
        build_autoencoder({"kind": "sd_vae"})
    with pytest.raises(ConfigError, match="patch_factor"):
        build_autoencoder({"kind": "sd_vae", "path": "x", "patch_factor": 2})
    with pytest.raises(ConfigError, match="unknown config key"):
        build_autoencoder({"kind": "identity", "chunk": 3})
