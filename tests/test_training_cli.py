"""`train` through click's CliRunner: tiny runs that write, load and resume
checkpoints (1-2 batches, small test subset)."""
import importlib.util
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from training import checkpoint  # noqa: E402
from training.command import train  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "_training_data_tests", os.path.join(os.path.dirname(__file__), "test_training_data.py"))
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
write_cifar = _mod.write_cifar

SMOKE = ["--max-batches", "2", "--test-limit", "64", "--batch-size", "16", "--quiet",
         "--threads", "1"]


def invoke(args):
    res = CliRunner().invoke(train, args, catch_exceptions=False)
    return res


def last_json(output):
    return json.loads(output.strip().splitlines()[-1])


def test_help_has_example():
    res = invoke(["--help"])
    assert res.exit_code == 0 and "Example" in res.output and "--resume" in res.output


def test_train_checkpoint_load_and_resume(tmp_path):
    out = str(tmp_path / "m.pt")
    res = invoke(["--arch", "mbv2-wht", "--epochs", "2", "-o", out, "--seed", "3", "--json",
                  "--schedule", "sgdr", "--label-smoothing", "0.1", "--width", "0.5"] + SMOKE)
    assert res.exit_code == 0, res.output
    s = last_json(res.output)
    assert {"arch", "epochs", "test_accuracy", "params", "checkpoint", "seconds"} <= set(s)
    assert s["arch"] == "mbv2-wht" and s["epochs"] == 2 and 0 <= s["test_accuracy"] <= 1
    model, ck = checkpoint.load(out)
    assert ck["epochs"] == 2 and ck["config"]["width"] == 0.5 and ck["config"]["in_channels"] == 1
    assert ck["normalization"] == {"mean": [0.2860], "std": [0.3530]}
    assert not model.training
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    # resume: continue the SGDR run to 3 epochs
    res = invoke(["--arch", "mbv2-wht", "--epochs", "3", "-o", out, "--resume", "--json"] + SMOKE)
    assert res.exit_code == 0, res.output
    _, ck2 = checkpoint.load(out)
    assert ck2["epochs"] == 3 and [h["epoch"] for h in ck2["history"]] == [1, 2, 3]
    assert ck2["history"][:2] == ck["history"]


def test_deterministic_with_seed(tmp_path):
    a, b = str(tmp_path / "a.pt"), str(tmp_path / "b.pt")
    base = ["--arch", "resnet20-structured", "--seed", "7", "--epochs", "2"] + SMOKE
    assert invoke(base + ["-o", a]).exit_code == 0
    assert invoke(base + ["-o", b]).exit_code == 0
    sa, sb = checkpoint.read(a)["state_dict"], checkpoint.read(b)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = str(tmp_path / "c.pt")
    assert invoke(base[:3] + ["8"] + base[4:] + ["-o", c]).exit_code == 0
    sc = checkpoint.read(c)["state_dict"]
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_resume_after_interruption_matches(tmp_path, monkeypatch):
    import training.trainer as tr
    a, b = str(tmp_path / "a.pt"), str(tmp_path / "b.pt")
    base = ["--arch", "resnet20", "--seed", "1", "--epochs", "2", "--width", "0.5"] + SMOKE
    assert invoke(base + ["-o", a]).exit_code == 0
    # interrupt the second run after its first checkpoint
    real_save = tr.ckpt_mod.save
    calls = []

    def save_then_stop(ck, path):
        real_save(ck, path)
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(tr.ckpt_mod, "save", save_then_stop)
    try:
        CliRunner().invoke(train, base + ["-o", b], catch_exceptions=False)
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(tr.ckpt_mod, "save", real_save)
    assert calls and checkpoint.read(b)["epochs"] == 1
    assert invoke(base + ["-o", b, "--resume"]).exit_code == 0
    sa, sb = checkpoint.read(a), checkpoint.read(b)
    assert sb["epochs"] == 2
    assert all(torch.equal(sa["state_dict"][k], sb["state_dict"][k]) for k in sa["state_dict"])


def test_cifar10_folder_training(tmp_path):
    write_cifar(tmp_path)
    out = str(tmp_path / "c.pt")
    res = invoke(["--arch", "mbv2-thesis", "--dataset", "cifar10", "--data-dir", str(tmp_path),
                  "--epochs", "1", "-o", out, "--width", "0.5", "--json"] + SMOKE)
    assert res.exit_code == 0, res.output
    model, ck = checkpoint.load(out)
    assert ck["config"]["in_channels"] == 3 and len(ck["normalization"]["mean"]) == 3
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_user_errors_are_click_exceptions(tmp_path):
    r = CliRunner()
    res = r.invoke(train, ["--arch", "mbv2", "--dataset", "cifar10", "--data-dir",
                           str(tmp_path), "-o", str(tmp_path / "x.pt"), "--epochs", "1"])
    assert res.exit_code == 1 and "cifar-10" in res.output.lower()
    if not torch.cuda.is_available():
        res = r.invoke(train, ["--arch", "mbv2", "-o", str(tmp_path / "x.pt"),
                               "--device", "cuda"])
        assert res.exit_code == 1 and "cuda" in res.output
    res = r.invoke(train, ["--arch", "mbv2", "-o", str(tmp_path / "x.pt"), "--batch-size", "0"])
    assert res.exit_code == 1


def test_backbone_frozen_and_distilled(tmp_path):
    teacher, out = str(tmp_path / "t.pt"), str(tmp_path / "s.pt")
    assert invoke(["--arch", "mbv2", "--width", "0.5", "--epochs", "1", "-o", teacher]
                  + SMOKE).exit_code == 0
    args = ["--arch", "mbv2-wht", "--width", "0.5", "--backbone", teacher, "--distill", "0.5",
            "--schedule", "sgdr", "--config", "wht_scale=true",
            "-o", out] + SMOKE
    res = invoke(args + ["--epochs", "1"])
    assert res.exit_code == 0, res.output
    res = invoke(args + ["--epochs", "2", "--resume"])   # re-freezes on resume
    assert res.exit_code == 0, res.output
    t, s = checkpoint.read(teacher), checkpoint.read(out)
    assert s["epochs"] == 2 and s["train_args"]["frozen_blocks"] == 13
    frozen = [k for k in s["state_dict"] if k.startswith(tuple(f"features.{i}." for i in range(13)))]
    assert frozen and all(torch.equal(s["state_dict"][k].float(), t["state_dict"][k].float())
                          for k in frozen)    # weights and BatchNorm statistics
    fresh = checkpoint.read(out)["state_dict"]["features.13.conv.0.T"]
    assert fresh.abs().sum() > 0 and "features.13.conv.0.V" in s["state_dict"]
    from training.zoo import _command
    assert f" --config wht_scale=true --backbone {teacher} --distill 0.5 " in _command(s)  # JSON, as --config reads it


def test_backbone_partly_frozen_from_init(tmp_path):
    """--freeze 7: the backbone's blocks 7-12 are copied but train; --init starts the rest from a run."""
    teacher, first, out = (str(tmp_path / f) for f in ("t.pt", "a.pt", "b.pt"))
    assert invoke(["--arch", "mbv2", "--width", "0.5", "--epochs", "1", "-o", teacher] + SMOKE).exit_code == 0
    bb = ["--backbone", teacher, "--distill", "0.5"]
    assert invoke(["--arch", "mbv2-wht", "--width", "0.5", "--epochs", "1", "-o", first] + bb + SMOKE).exit_code == 0
    res = invoke(["--init", first, "--freeze", "7", "--epochs", "1", "-o", out] + bb + SMOKE)
    assert res.exit_code == 0, res.output
    t, a, s = (checkpoint.read(p)["state_dict"] for p in (teacher, first, out))
    block = lambda k, lo, hi: k.startswith(tuple(f"features.{i}." for i in range(lo, hi)))
    assert all(torch.equal(s[k].float(), t[k].float()) for k in s if block(k, 0, 7))
    assert any(not torch.equal(s[k].float(), t[k].float()) for k in s if block(k, 7, 13))
    assert any(not torch.equal(s[k].float(), a[k].float()) for k in s if block(k, 13, 19))
    ck = checkpoint.read(out)
    assert ck["train_args"]["frozen_blocks"] == 7
    from training.zoo import _command
    assert f" --init {first} --backbone {teacher} --freeze 7 --distill 0.5 " in _command(ck)


def test_backbone_errors(tmp_path):
    r = CliRunner()
    res = r.invoke(train, ["--arch", "mbv2", "--freeze", "3", "-o", str(tmp_path / "x.pt")])
    assert res.exit_code == 1 and "--freeze needs --backbone" in res.output
    res = r.invoke(train, ["--arch", "mbv2-wht", "--backbone", os.path.join(ROOT, "zoo", "fmnist-mbv2.pt"),
                           "--freeze", "14", "-o", str(tmp_path / "x.pt")] + SMOKE)
    assert res.exit_code == 1 and "--freeze must be in [0, 13]" in res.output
    res = r.invoke(train, ["--arch", "mbv2", "--distill", "0.3", "-o", str(tmp_path / "x.pt")])
    assert res.exit_code == 1 and "--distill needs --backbone" in res.output
    res = r.invoke(train, ["--arch", "resnet20", "--backbone", os.path.join(ROOT, "zoo", "fmnist-mbv2.pt"),
                           "-o", str(tmp_path / "x.pt")] + SMOKE)
    assert res.exit_code == 1 and "features" in res.output
    res = r.invoke(train, ["--arch", "mbv2-wht", "--backbone", str(tmp_path / "none.pt"),
                           "-o", str(tmp_path / "x.pt")] + SMOKE)
    assert res.exit_code == 1 and "no such file" in res.output


def test_resume_damaged_or_finished(tmp_path):
    """--resume names the file it cannot read, and says when the checkpoint has nothing left to train."""
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage\x80\x04")
    res = CliRunner().invoke(train, ["--arch", "resnet20", "--resume", "-o", str(bad), "--epochs", "1"] + SMOKE)
    assert res.exit_code == 1 and str(bad) in res.output and "not a readable training checkpoint" in res.output
    out = str(tmp_path / "r.pt")
    assert invoke(["--arch", "resnet20", "--epochs", "1", "-o", out] + SMOKE).exit_code == 0
    res = CliRunner().invoke(train, ["--arch", "resnet20", "--epochs", "2", "--resume", "-o", out,
                                     *[a for a in SMOKE if a != "--quiet"]])
    assert res.exit_code == 0 and "nothing to train" in res.output
