"""Text encoders through build_text_encoder: tiny T5/CLIP saved to tmp folders, the packaged MiniLM."""
import pytest
import torch

from latte.config import ConfigError
from latte.encoders import MissingWeightsError, TextEncoder, build_text_encoder

from helpers import WORDS, word_tokenizer


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    from transformers import T5Config, T5EncoderModel

    folder = tmp_path_factory.mktemp("t5")
    torch.manual_seed(0)
    T5EncoderModel(T5Config(vocab_size=len(WORDS), d_model=16, d_kv=4, d_ff=32, num_layers=2,
                            num_heads=2)).save_pretrained(folder)
    word_tokenizer("$A </s>", "<pad>").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clip_pipeline_dir(tmp_path_factory):
    """Laid out like a diffusers pipeline: text_encoder/ and tokenizer/."""
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = tmp_path_factory.mktemp("clip")
    torch.manual_seed(0)
    CLIPTextModel(CLIPTextConfig(vocab_size=len(WORDS), hidden_size=16, intermediate_size=32,
                                 num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77)
                  ).save_pretrained(folder / "text_encoder")
    word_tokenizer("<|startoftext|> $A <|endoftext|>", "<|endoftext|>").save_pretrained(folder / "tokenizer")
    return folder


def test_t5_shapes_mask_and_padding_invariance(t5_dir):
    enc = build_text_encoder({"kind": "t5", "path": str(t5_dir), "max_length": 8})
    assert isinstance(enc, TextEncoder) and enc.dim == 16 and enc.max_length == 8
    hidden, mask = enc.encode(["a red square", "blue circle moving left"])
    assert hidden.shape == (2, 8, 16) and hidden.dtype == torch.float32
    assert mask.dtype == torch.bool and mask.sum(1).tolist() == [4, 5]  # words + </s>
    assert mask[0, :4].all() and not mask[0, 4:].any()
    # the mask reaches the model: real-token features do not depend on how much padding follows
    longer = build_text_encoder({"kind": "t5", "path": str(t5_dir), "max_length": 12})
    torch.testing.assert_close(longer.encode(["a red square"])[0][:, :4], hidden[:1, :4], rtol=1e-5, atol=1e-6)


def test_t5_default_max_length_and_truncation(t5_dir):
    assert build_text_encoder({"kind": "t5", "path": str(t5_dir)}).max_length == 120  # the official setting
    enc = build_text_encoder({"kind": "t5", "path": str(t5_dir), "truncate_to_valid": True})
    hidden, mask = enc.encode(["a red square"])
    assert hidden.shape == (1, 4, 16) and mask.all()
    null_hidden, null_mask = enc.null_embedding()  # never truncated: slice it to the prompt length
    assert null_hidden.shape == (1, 120, 16) and null_mask.sum() == 1


def test_null_embedding_is_cached_and_equals_empty_prompt(t5_dir):
    enc = build_text_encoder({"kind": "t5", "path": str(t5_dir), "max_length": 6})
    first = enc.null_embedding()
    assert enc.null_embedding() is first
    hidden, mask = enc.encode([""])
    torch.testing.assert_close(first[0], hidden)
    assert torch.equal(first[1], mask)


def test_clip_from_pipeline_folder_gives_last_hidden_state(clip_pipeline_dir):
    from transformers import CLIPTextModel

    enc = build_text_encoder({"kind": "clip", "path": str(clip_pipeline_dir)})
    assert enc.max_length == 77 and enc.dim == 16
    hidden, mask = enc.encode(["red circle"])
    assert hidden.shape == (1, 77, 16) and mask.sum() == 4  # bos, 2 words, eos
    raw = CLIPTextModel.from_pretrained(clip_pipeline_dir / "text_encoder").eval()
    ids = torch.tensor([[3, 6, 9, 4] + [4] * 73])
    with torch.no_grad():
        expected = raw(input_ids=ids).last_hidden_state
    torch.testing.assert_close(hidden[:, :4], expected[:, :4], rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="exceeds the 77 positions"):
        build_text_encoder({"kind": "clip", "path": str(clip_pipeline_dir), "max_length": 100})


def test_identity_distinguishes_models(t5_dir, clip_pipeline_dir):
    a = build_text_encoder({"kind": "t5", "path": str(t5_dir)}).identity()
    b = build_text_encoder({"kind": "clip", "path": str(clip_pipeline_dir)}).identity()
    assert a["kind"] == "t5" and a["dim"] == 16 and a["max_length"] == 120
    assert a["fingerprint"] != b["fingerprint"]


def test_minilm_loads_offline_and_masks_padding(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = build_text_encoder({})
    assert enc.identity()["kind"] == "minilm" and enc.dim == 384
    hidden, mask = enc.encode(["a red square moves left", "hi"])
    assert hidden.shape == (2, 64, 384)
    n = mask.sum(1).tolist()
    assert n[0] > n[1] >= 3  # [CLS] tokens [SEP]
    for row, k in zip(mask, n):
        assert row[:k].all() and not row[k:].any()
    assert torch.isfinite(hidden).all() and hidden[0, :n[0]].abs().sum() > 0


def test_missing_folders_name_path_and_expected_files(tmp_path, t5_dir):
    with pytest.raises(MissingWeightsError, match=f"{tmp_path / 'absent'}.*config.json"):
        build_text_encoder({"kind": "t5", "path": str(tmp_path / "absent")})
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_bytes((t5_dir / "config.json").read_bytes())
    (tmp_path / "half" / "model.safetensors").write_bytes((t5_dir / "model.safetensors").read_bytes())
    with pytest.raises(MissingWeightsError, match="tokenizer.*tokenizer.json or spiece.model"):
        build_text_encoder({"kind": "t5", "path": str(tmp_path / "half")})
    with pytest.raises(ConfigError, match="text_encoder.path: required"):
        build_text_encoder({"kind": "clip"})


def test_hidden_layer_selects_the_hidden_state_and_embeddings_ignore_context(t5_dir):
    last = build_text_encoder({"kind": "t5", "path": str(t5_dir)})
    assert "hidden_layer" not in last.identity()  # caches written before the option stay valid
    emb = build_text_encoder({"kind": "t5", "path": str(t5_dir), "hidden_layer": 0})
    assert emb.identity()["hidden_layer"] == 0
    prompts = [f"{WORDS[5]} {WORDS[6]} {WORDS[7]}", f"{WORDS[5]} {WORDS[8]} {WORDS[7]}"]
    h_last, _ = last.encode(prompts)
    h_emb, _ = emb.encode(prompts)
    tokens = emb.tokenizer(prompts, return_tensors="pt")["input_ids"]
    assert torch.allclose(h_emb[0, 0], emb.model.get_input_embeddings()(tokens[:1, 0])[0])
    assert torch.allclose(h_emb[0, 0], h_emb[1, 0])  # the first word's feature ignores the second word
    assert not torch.allclose(h_last[0, 0], h_last[1, 0], atol=1e-6)  # the last layer mixes the prompt
    with pytest.raises(ConfigError, match="hidden_layer: 5 is outside"):
        build_text_encoder({"kind": "t5", "path": str(t5_dir), "hidden_layer": 5})
