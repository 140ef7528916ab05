"""latte.io / latte.dist: the one way to read weights and YAML, write atomically and read the torchrun env."""
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from latte.dist import torchrun_env
from latte.io import (InputError, OutputError, WeightsError, atomic_write_json, atomic_write_text,
                      load_state_dict_strict, load_yaml_mapping, read_state_dict, writing)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_read_state_dict_formats_and_wrappers(tmp_path):
    sd = {"w": torch.ones(2, 3), "b": torch.zeros(3)}
    save_file(sd, str(tmp_path / "a.safetensors"))
    torch.save({"ema": sd, "opt": {}}, tmp_path / "b.pt")
    torch.save({"model": sd}, tmp_path / "c.pt")
    folder = tmp_path / "folder"
    folder.mkdir()
    save_file(sd, str(folder / "diffusion_pytorch_model.safetensors"))
    for source in (tmp_path / "a.safetensors", tmp_path / "b.pt", tmp_path / "c.pt", folder, {"ema": sd}):
        got = read_state_dict(source)
        assert set(got) == {"w", "b"} and torch.equal(got["w"], sd["w"])


@pytest.mark.parametrize("content,expected", [
    (b"", "not a valid safetensors"),
    (b"\xff" * 40, "not a valid safetensors"),
])
def test_read_state_dict_corrupt_safetensors_names_file(tmp_path, content, expected):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=expected) as e:
        read_state_dict(path)
    assert str(path) in str(e.value)


def test_read_state_dict_truncated_safetensors(tmp_path):
    path = tmp_path / "t.safetensors"
    save_file({"w": torch.randn(64, 64)}, str(path))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(WeightsError, match="t.safetensors"):
        read_state_dict(path)


def test_read_state_dict_refuses_hostile_pickle(tmp_path, capfd):
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"w": _Evil()}))
    with pytest.raises(WeightsError, match="refused to unpickle") as e:
        read_state_dict(path)
    assert str(path) in str(e.value)
    assert "pwned" not in capfd.readouterr().out


def test_read_state_dict_truncated_pt_missing_and_not_a_state_dict(tmp_path):
    path = tmp_path / "t.pt"
    torch.save({"w": torch.randn(100, 100)}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(WeightsError, match="t.pt"):
        read_state_dict(path)
    with pytest.raises(WeightsError, match="no such file"):
        read_state_dict(tmp_path / "missing.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match="holds a list"):
        read_state_dict(tmp_path / "list.pt")
    torch.save({"step": 3, "w": torch.ones(1)}, tmp_path / "mixed.pt")
    with pytest.raises(WeightsError, match="non-tensor entries"):
        read_state_dict(tmp_path / "mixed.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="no weights in this folder"):
        read_state_dict(tmp_path / "empty")


def test_load_state_dict_strict_names_keys():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    good = model.state_dict()
    load_state_dict_strict(model, good, "src")
    bad = dict(good)
    del bad["0.bias"]
    bad["extra.weight"] = torch.ones(1)
    bad["1.weight"] = torch.ones(5, 5)
    with pytest.raises(WeightsError) as e:
        load_state_dict_strict(model, bad, "my.pt")
    msg = str(e.value)
    assert "my.pt" in msg and "missing 1 key(s): 0.bias" in msg and "unexpected 1 key(s): extra.weight" in msg
    assert "1.weight (5, 5) (model: (1, 3))" in msg


def test_load_yaml_mapping_errors(tmp_path):
    ok = tmp_path / "ok.yaml"
    ok.write_text("a: 1\nb: {c: 2}\n")
    assert load_yaml_mapping(ok) == {"a": 1, "b": {"c": 2}}
    (tmp_path / "empty.yaml").write_text("")
    assert load_yaml_mapping(tmp_path / "empty.yaml") == {}
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: 1\nb: [1, 2\n")
    with pytest.raises(InputError, match=r"broken.yaml: not valid YAML \(line \d+"):
        load_yaml_mapping(broken)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(InputError, match="must be a YAML mapping"):
        load_yaml_mapping(lst)
    with pytest.raises(InputError, match="config file not found"):
        load_yaml_mapping(tmp_path / "nope.yaml")


def test_atomic_writes_and_clear_write_errors(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "hello")
    atomic_write_json(tmp_path / "b.json", {"x": 1})
    assert (tmp_path / "a.txt").read_text() == "hello"
    assert (tmp_path / "b.json").read_text() == '{\n  "x": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json"]  # no temporary files left
    with pytest.raises(OutputError, match="cannot write"):
        atomic_write_text(tmp_path / "no_such_dir" / "c.txt", "x")
    import errno
    with pytest.raises(OutputError, match="no space left on the device writing .*d.bin"):
        with writing(tmp_path / "d.bin"):
            raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OutputError, match="cannot write to .*: Read-only file system"):
        with writing(tmp_path / "d.bin"):
            raise OSError(errno.EROFS, "Read-only file system")


def test_torchrun_env(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    env = torchrun_env()
    assert (env.rank, env.world_size, env.local_rank, env.distributed) == (0, 1, 0, False)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    env = torchrun_env()
    assert (env.rank, env.world_size, env.distributed, env.is_main) == (1, 2, True, False)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="inconsistent"):
        torchrun_env()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="RANK='x'"):
        torchrun_env()
