"""``latte demo`` without a browser: request validation, the queue (bounds, fairness, cancellation), the Gradio
endpoint through ``gradio_client`` (seeded output equals ``latte sample``), the missing-model page, the CLI."""
import json
import threading
import time

import numpy as np
import pytest
import torch

from latte.apps.demo import (DemoRequest, GeneratorOptions, LatteGenerator, Limits, QueueFull, RequestError,
                             RequestQueue, Stage, build_app, launch, run_request, validate_request)
from latte.models import Latte, LatteConfig
from latte.sampling import LattePipeline, SampleOutput, save_videos

TINY_TEXT = dict(input_size=16, num_frames=8, in_channels=3, hidden_size=32, depth=2, num_heads=2,
                 conditioning="text", text_dim=384)


def require(module: str):
    """Import a test dependency or fail with what to install (CI installs it: .ci/run)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        pytest.fail(f"the demo tests need '{module}': pip install -e '.[dev,demo]' (see .ci/run)")


def write_text_run(run_dir):
    """A tiny random-weight text-to-video run (identity autoencoder, the packaged offline MiniLM): 8 frames of
    16x16 px, loadable by LattePipeline.load and `latte sample`."""
    from latte.training.config import run_config_from_dict, save_run_config

    torch.manual_seed(0)
    model = Latte(LatteConfig(**TINY_TEXT))
    with torch.no_grad():  # the official init zeroes the output layer: make the output depend on the input
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ckpt = run_dir / "checkpoints" / "step_0000001"
    model.save_pretrained(ckpt / "ema")
    cfg = run_config_from_dict({"model": TINY_TEXT, "autoencoder": {"kind": "identity"},
                                "text_encoder": {"kind": "minilm", "max_length": 16},
                                "train": {"run_dir": str(run_dir)}})
    save_run_config(cfg, ckpt / "run_config.yaml")
    torch.save({"step": torch.tensor(1)}, ckpt / "train_state.pt")
    (run_dir / "checkpoints" / "latest").write_text("step_0000001\n")
    return run_dir


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    return write_text_run(tmp_path_factory.mktemp("demo") / "run")


@pytest.fixture(scope="module")
def text_generator(text_run):
    return LatteGenerator(LattePipeline.load(text_run), examples=[("Examples", ["a red circle moving left"])])


class SlowGenerator:
    """A fake generator: ``steps`` sampler steps of ``delay`` seconds each, optional stages (like a cascade)."""

    def __init__(self, delay=0.05, stages=()):
        self.delay = delay
        self.stages = tuple(Stage(s, s.upper()) for s in stages)
        self.calls = []

    def options(self):
        return GeneratorOptions(title="slow", conditioning="text", samplers=("ddim",), sampler="ddim", steps=5,
                                guidance=2.0, size="2 frames of 4x4 px", stages=self.stages)

    def generate(self, request, on_step):
        self.calls.append(request)
        for stage in ("base",) + request.stages:
            for i in range(request.steps):
                time.sleep(self.delay)
                on_step(stage, i + 1, request.steps)
        videos = np.full((request.num_videos, 2, 4, 4, 3), request.seed % 255, np.uint8)
        records = [{"index": i, "seed": request.seed + i, "prompt": request.prompt, "sampler": request.sampler,
                    "steps": request.steps, "cfg_scale": request.guidance, "stages": list(request.stages)}
                   for i in range(request.num_videos)]
        return SampleOutput(videos, records)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def wait_for(predicate, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


# ------------------------------------------------------------------------------------------------ validation
OPTS = SlowGenerator(stages=("interp", "vsr")).options()


def test_validate_request_defaults_and_random_seed():
    req = validate_request({"prompt": "  a red circle  ", "seed": -1}, OPTS)
    assert req.prompt == "a red circle" and req.sampler == "ddim" and req.steps == 5 and req.guidance == 2.0
    assert 0 <= req.seed <= Limits().max_seed and req.stages == ("interp", "vsr")  # stages default on
    seeds = {validate_request({"prompt": "x", "seed": -1}, OPTS).seed for _ in range(5)}
    assert len(seeds) > 1  # -1 draws a seed (and the drawn one is what the request carries)
    req = validate_request({"prompt": "x", "seed": 7.0, "steps": "12", "num_videos": 2, "stages": ["vsr"]}, OPTS)
    assert (req.seed, req.steps, req.num_videos, req.stages) == (7, 12, 2, ("vsr",))


@pytest.mark.parametrize("values, message", [
    ({"prompt": ""}, "The prompt is empty"),
    ({"prompt": "   "}, "The prompt is empty"),
    ({"prompt": "x" * 301}, "The prompt is too long: 301 characters (at most 300)"),
    ({"prompt": "x", "negative_prompt": "n" * 400}, "The negative prompt is too long"),
    ({"prompt": "x", "steps": 0}, "Steps must be a whole number from 1 to 250, got 0"),
    ({"prompt": "x", "steps": 251}, "Steps must be a whole number from 1 to 250"),
    ({"prompt": "x", "steps": 2.5}, "Steps must be a whole number"),
    ({"prompt": "x", "steps": "many"}, "Steps must be a whole number"),
    ({"prompt": "x", "guidance": 0.5}, "Guidance must be a number from 1 to 30"),
    ({"prompt": "x", "guidance": float("nan")}, "Guidance must be a number"),
    ({"prompt": "x", "seed": -2}, "The seed must be a whole number from -1 to 2147483647"),
    ({"prompt": "x", "seed": 2**31}, "The seed must be a whole number"),
    ({"prompt": "x", "num_videos": 5}, "Number of videos must be a whole number from 1 to 4"),
    ({"prompt": "x", "num_videos": 0}, "Number of videos must be a whole number from 1 to 4"),
    ({"prompt": "x", "sampler": "eulr"}, "Unknown sampler 'eulr'"),
    ({"prompt": "x", "stages": ["upscale"]}, "Unknown stage(s) ['upscale']"),
    ({"prompt": "x", "cache": "0.1"}, "has no step cache"),
])
def test_validate_request_rejects_bad_input(values, message):
    with pytest.raises(RequestError) as info:
        validate_request(values, OPTS)
    assert message in str(info.value)


def test_validate_request_class_and_unconditional_models():
    cls = GeneratorOptions(title="c", conditioning="class", samplers=("ddpm",), sampler="ddpm", steps=5,
                           guidance=7.0, size="", classes=("apple", "bird"))
    assert validate_request({"class_label": "bird"}, cls).class_label == "bird"
    with pytest.raises(RequestError, match="Choose a class from the list \\(apple, bird\\); got 'zebra'"):
        validate_request({"class_label": "zebra"}, cls)
    with pytest.raises(RequestError, match="not text-conditional"):
        validate_request({"class_label": "bird", "prompt": "a bird"}, cls)
    none = GeneratorOptions(title="u", conditioning="none", samplers=("ddpm",), sampler="ddpm", steps=5,
                            guidance=1.0, size="")
    assert validate_request({}, none).guidance == 1.0
    with pytest.raises(RequestError, match="unconditional: guidance must be 1"):
        validate_request({"guidance": 3}, none)


# ------------------------------------------------------------------------------------------------ running
def test_run_request_equals_the_pipeline_and_stays_in_the_output_folder(text_generator, tmp_path):
    req = validate_request({"prompt": "a red circle moving left", "negative_prompt": "blurry", "seed": 3,
                            "sampler": "ddim", "steps": 4, "guidance": 3.0, "num_videos": 2}, text_generator.options())
    steps = []
    result = run_request(text_generator, req, tmp_path, on_step=lambda stage, s, t: steps.append((stage, s, t)))
    assert steps == [("sampling", i, 4) for i in range(1, 5)]  # progress advances with the sampler steps
    assert all(p.is_relative_to(tmp_path) and p.stat().st_size > 0 for p in result.videos + result.gifs)
    assert [r["seed"] for r in result.records] == [3, 4] and result.records[0]["negative_prompt"] == "blurry"
    ref = text_generator.pipe(prompts=["a red circle moving left"], negative_prompt="blurry", num_videos=2, seed=3,
                              sampler="ddim", steps=4, cfg_scale=3.0, progress=False)
    assert ref.videos.shape == (2, 8, 16, 16, 3)
    save_videos(ref, tmp_path / "ref", formats=("mp4", "gif"), fps=8)
    for i in range(2):  # the same frames, written the same way
        assert result.gifs[i].read_bytes() == (tmp_path / "ref" / f"0000{i}.gif").read_bytes()
        assert result.videos[i].read_bytes() == (tmp_path / "ref" / f"0000{i}.mp4").read_bytes()
    plain = text_generator.pipe(prompts=["a red circle moving left"], num_videos=1, seed=3, sampler="ddim",
                                steps=4, cfg_scale=3.0, progress=False)
    assert (plain.videos[0] != ref.videos[0]).any()  # the negative prompt changes the guidance


def test_negative_prompt_with_truncated_text_features(text_generator):
    """The official single-prompt mode (features cut to valid tokens) takes a negative prompt of another length."""
    pipe = text_generator.pipe
    kw = dict(prompts=["a red circle moving left"], seed=1, sampler="ddim", steps=2, cfg_scale=3.0,
              output_type="latent", progress=False)
    pipe.truncate_text = True
    try:
        short = pipe(negative_prompt="dark", **kw).videos
        long = pipe(negative_prompt="a dark blurry picture of many shapes moving everywhere", **kw).videos
        none = pipe(**kw).videos
    finally:
        pipe.truncate_text = False
    assert torch.isfinite(short).all() and (short != long).any() and (short != none).any()


def test_generator_errors_become_page_messages(tmp_path):
    class Refusing(SlowGenerator):
        def generate(self, request, on_step):
            raise ValueError("this class-conditional model has no null class")

    with pytest.raises(RequestError, match="no null class"):
        run_request(Refusing(), validate_request({"prompt": "x"}, OPTS), tmp_path)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpm-solver", "euler-a", "heun"])
def test_sampler_callback_follows_every_step_and_can_stop(sampler):
    from latte.sampling import sample_loop
    from latte.sampling.sources import linear_betas

    model_fn = lambda x, t: torch.cat([0.3 * x, torch.zeros_like(x)], dim=1)  # noqa: E731
    noise = torch.randn(1, 2, 2, 4, 4)
    seen = []
    out = sample_loop(model_fn, noise, sampler, 5, linear_betas(), callback=lambda s, t: seen.append((s, t)))
    total = seen[0][1]
    assert seen == [(i, total) for i in range(1, total + 1)] and total >= 5 and torch.isfinite(out).all()

    class Stop(Exception):
        pass

    def stop_at_2(step, total):
        if step == 2:
            raise Stop

    with pytest.raises(Stop):
        sample_loop(model_fn, noise, sampler, 5, linear_betas(), callback=stop_at_2)


def test_class_model_through_the_demo(tmp_path):
    from latte.encoders.autoencoders import IdentityAutoencoder

    torch.manual_seed(0)
    model = Latte(LatteConfig(input_size=8, num_frames=2, in_channels=3, hidden_size=32, depth=2, num_heads=2,
                              conditioning="class", num_classes=2))
    gen = LatteGenerator(LattePipeline(model, IdentityAutoencoder(), class_names=["apple", "bird"]))
    opts = gen.options()
    assert opts.conditioning == "class" and opts.classes == ("apple", "bird") and opts.size == "2 frames of 8x8 px"
    req = validate_request({"class_label": "bird", "seed": 1, "sampler": "ddim", "steps": 2, "guidance": 2}, opts)
    result = run_request(gen, req, tmp_path)
    assert result.records[0]["class_name"] == "bird" and result.records[0]["cfg_scale"] == 2.0


class FakeCascade:
    """What CascadeGenerator needs from a cascade (see its docstring), with 2-frame base videos."""

    conditioning = "text"
    optional_stages = ["interp", "vsr"]

    def __init__(self):
        from latte.sampling.sources import DEFAULTS

        self.defaults = DEFAULTS["text"]
        self.calls = []

    def __call__(self, prompts, num_videos, seed, sampler, steps, cfg_scale, negative_prompt, stages, batch_size,
                 progress, callback):
        self.calls.append(dict(stages=stages, negative_prompt=negative_prompt))
        for stage in ["base"] + stages:
            for i in range(steps):
                callback(stage, i + 1, steps)
        frames = 4 if "interp" in stages else 2
        videos = np.zeros((num_videos, frames, 8, 8, 3), np.uint8)
        records = [{"index": i, "seed": seed + i, "prompt": prompts[0], "sampler": sampler, "steps": steps,
                    "cfg_scale": cfg_scale, "fps": 24.0 if "interp" in stages else 8.0} for i in range(num_videos)]
        return SampleOutput(videos, records)


def test_cascade_generator_shows_stage_switches_and_reports_stage_progress(tmp_path):
    from latte.apps.demo import CascadeGenerator

    cascade = FakeCascade()
    gen = CascadeGenerator(cascade)
    opts = gen.options()
    assert [(s.name, s.label) for s in opts.stages] == [("interp", "Temporal interpolation"),
                                                        ("vsr", "Super-resolution (x4)")]
    req = validate_request({"prompt": "a cat", "seed": 1, "steps": 2, "stages": ["interp"],
                            "negative_prompt": "dog"}, opts)
    seen = []
    result = run_request(gen, req, tmp_path, on_step=lambda stage, s, t: seen.append(stage))
    assert cascade.calls == [{"stages": ["interp"], "negative_prompt": "dog"}]
    assert seen == ["base", "base", "interp", "interp"] and result.records[0]["fps"] == 24.0


# ------------------------------------------------------------------------------------------------ the queue
def test_queue_full_cancel_frees_the_slot_and_fifo_order(tmp_path):
    gen = SlowGenerator(delay=0.05)
    queue = RequestQueue(gen, tmp_path, Limits(queue_size=2))
    try:
        req = lambda seed: DemoRequest(prompt=f"p{seed}", seed=seed, sampler="ddim", steps=40)  # noqa: E731
        first = queue.submit(req(1), session="a")
        wait_for(lambda: first.state == "running" and first.step > 0)
        second = queue.submit(req(2), session="b")
        with pytest.raises(QueueFull, match="The queue is full \\(2 requests waiting or running"):
            queue.submit(req(3), session="c")
        with pytest.raises(RequestError, match="already have a request in the queue"):
            queue.submit(req(4), session="b")  # one request per session: nobody fills the queue alone
        assert queue.position(second) == 1
        assert queue.cancel(second) and second.finished and second.state == "cancelled"  # waiting: at once
        third = queue.submit(req(3), session="c")  # the cancelled request's slot is free
        assert queue.cancel_session("a") == 1  # running: stops at its next step
        assert first.wait(5) and first.state == "cancelled" and first.step < 40
        assert third.wait(20) and third.state == "done" and third.result.records[0]["seed"] == 3
        assert [r.seed for r in gen.calls] == [1, 3]  # the cancelled waiting request never ran
        assert queue.active() == 0 and [i["record"]["seed"] for i in queue.results()] == [3]
    finally:
        queue.close()


def test_queue_reports_failures_and_keeps_serving(tmp_path):
    class Flaky(SlowGenerator):
        def generate(self, request, on_step):
            if request.seed == 1:
                raise RuntimeError("boom")
            return super().generate(request, on_step)

    queue = RequestQueue(Flaky(delay=0), tmp_path)
    try:
        bad = queue.submit(DemoRequest(prompt="x", seed=1, steps=2))
        good = queue.submit(DemoRequest(prompt="x", seed=2, steps=2))
        assert bad.wait(10) and bad.state == "failed" and "Internal error (RuntimeError: boom)" in bad.error
        assert good.wait(10) and good.state == "done"
    finally:
        queue.close()


# ------------------------------------------------------------------------------------------------ the server
@pytest.fixture(scope="module")
def server(text_generator, tmp_path_factory):
    require("gradio")
    queue = RequestQueue(text_generator, tmp_path_factory.mktemp("demo_out"))
    app = build_app(queue)
    _, url, _ = launch(app, queue, port=free_port(), block=False, quiet=True)
    yield url, queue
    app.close()
    queue.close()


def test_api_seeded_output_equals_latte_sample(server, text_run, tmp_path):
    """The page's endpoint through gradio_client: the GIF and settings equal `latte sample`'s for the same seed."""
    from latte.cli import main

    Client = require("gradio_client").Client
    url, queue = server
    client = Client(url, verbose=False, download_files=False)  # files as URLs: fetched below from the server
    video, gifs, settings, gallery, status = client.predict(  # (the gallery State is not returned)
        "a blue square moving up", "", None, 5, "ddim", 4, 2.5, 1, [], "", api_name="/generate")
    settings = json.loads(settings)
    assert "Done in" in status and "seed(s) 5" in status
    assert settings["seed"] == 5 and settings["steps"] == 4 and settings["cfg_scale"] == 2.5
    out = tmp_path / "sample"
    assert main(["sample", "--checkpoint", str(text_run), "--prompt", "a blue square moving up", "--seed", "5",
                 "--sampler", "ddim", "--steps", "4", "--cfg-scale", "2.5", "--out", str(out),
                 "--format", "mp4,gif", "--quiet"]) == 0
    expected = json.loads((out / "00000.json").read_text())
    assert settings == expected  # the sidecar: same settings, model hash, encoders, files
    assert fetch(gifs[0]["url"]) == (out / "00000.gif").read_bytes()  # served by the page, byte for byte
    assert fetch(video.get("video", video)["url"]) == (out / "00000.mp4").read_bytes()
    assert any("a blue square moving up" in (item.get("caption") or "") for item in gallery)


def test_api_bad_input_gives_a_message_and_the_server_keeps_serving(server):
    Client = require("gradio_client").Client
    url, _ = server
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="The prompt is empty"):
        client.predict("", "", None, 1, "ddim", 2, 2.0, 1, [], "", api_name="/generate")
    with pytest.raises(Exception, match="The prompt is too long: 301 characters"):
        client.predict("x" * 301, "", None, 1, "ddim", 2, 2.0, 1, [], "", api_name="/generate")
    with pytest.raises(Exception, match="The seed must be a whole number from -1 to 2147483647, got -5"):
        client.predict("a cat", "", None, -5, "ddim", 2, 2.0, 1, [], "", api_name="/generate")
    # the sliders' and dropdowns' own bounds (Gradio checks them before our validation sees the values)
    with pytest.raises(Exception, match="Value: eulr is not in the list of choices"):
        client.predict("a cat", "", None, 1, "eulr", 2, 2.0, 1, [], "", api_name="/generate")
    with pytest.raises(Exception, match="Value 10000 is greater than maximum value 250"):
        client.predict("a cat", "", None, 1, "ddim", 10_000, 2.0, 1, [], "", api_name="/generate")
    with pytest.raises(Exception, match="Value 50 is greater than maximum value 4"):
        client.predict("a cat", "", None, 1, "ddim", 2, 2.0, 50, [], "", api_name="/generate")
    with pytest.raises(Exception, match="Value 0.5 is less than minimum value 1.0"):
        client.predict("a cat", "", None, 1, "ddim", 2, 0.5, 1, [], "", api_name="/generate")
    *_, status = client.predict("a cat", "", None, 1, "ddim", 2, 2.0, 1, [], "", api_name="/generate")
    assert "Done in" in status


def test_server_reads_no_arbitrary_paths(server):
    import urllib.error
    import urllib.request

    url, _ = server
    for path in ("gradio_api/file=/etc/passwd", "file=/etc/passwd", "gradio_api/file=../../../../etc/passwd"):
        try:
            body = urllib.request.urlopen(url + path, timeout=10).read()
        except urllib.error.HTTPError as e:
            assert e.code in (403, 404)
        else:
            assert b"root:" not in body


def test_api_cancel_and_queue_full(tmp_path):
    require("gradio")
    Client = require("gradio_client").Client
    gen = SlowGenerator(delay=0.05)
    queue = RequestQueue(gen, tmp_path, Limits(queue_size=1))
    app = build_app(queue)
    _, url, _ = launch(app, queue, port=free_port(), block=False, quiet=True)
    try:
        a, b = Client(url, verbose=False), Client(url, verbose=False)
        job = a.submit("slow one", "", None, 1, "ddim", 200, 2.0, 1, [], "", api_name="/generate")
        wait_for(lambda: queue.active() == 1 and queue._running is not None and queue._running.step > 0)
        with pytest.raises(Exception, match="The queue is full"):
            b.predict("another", "", None, 2, "ddim", 2, 2.0, 1, [], "", api_name="/generate")
        assert a.predict(api_name="/cancel") == "Cancelling..."
        *_, status = job.result(timeout=30)
        assert status.startswith("Cancelled") and queue.active() == 0
        *_, status = b.predict("another", "", None, 2, "ddim", 2, 2.0, 1, [], "", api_name="/generate")
        assert "Done in" in status  # the slot was freed
        # Gradio's own cancellation of the event (what happens when a page goes away) frees the slot too
        job = a.submit("slow two", "", None, 3, "ddim", 200, 2.0, 1, [], "", api_name="/generate")
        wait_for(lambda: queue._running is not None and queue._running.step > 0)
        job.cancel()
        wait_for(lambda: queue.active() == 0, timeout=10)
        assert gen.calls[-1].seed == 3 and queue.results()[0]["record"]["seed"] == 2  # stopped, not finished
    finally:
        app.close()
        queue.close()


# ------------------------------------------------------------------------------------------------ pages, CLI
def _markdown(app) -> str:
    import gradio

    return "\n".join(str(b.value) for b in app.blocks.values() if isinstance(b, gradio.Markdown))


def test_stage_switches_appear_for_a_generator_with_stages(tmp_path):
    gradio = require("gradio")
    for stages, visible in (((), False), (("interp", "vsr"), True)):
        queue = RequestQueue(SlowGenerator(stages=stages), tmp_path)
        try:
            app = build_app(queue)
            box = next(b for b in app.blocks.values() if isinstance(b, gradio.CheckboxGroup))
            assert box.visible is visible and [c[1] for c in box.choices] == list(stages)
        finally:
            queue.close()


def test_missing_quickstart_model_page_says_the_command(tmp_path, monkeypatch):
    require("gradio")
    from latte.cli import build_parser
    from latte.cli.demo import build

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["demo"])
    assert (args.host, args.share, args.checkpoint) == ("127.0.0.1", False, None)  # loopback unless told
    app, queue = build(args)
    assert queue is None and "latte quickstart" in _markdown(app) and "quickstart_out/latte" in _markdown(app)


def test_cli_errors_name_the_problem(tmp_path, capsys):
    require("gradio")
    from latte.cli import main

    assert main(["demo", "--checkpoint", str(tmp_path / "nope")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["demo", "--cascade", str(tmp_path / "nope")]) == 2
    assert "latte demo:" in capsys.readouterr().err


def test_quickstart_examples_include_heldout_pairs(tmp_path):
    from latte.cli.demo import quickstart_examples

    (tmp_path / "stages").mkdir()
    heldout = [f"a {p} moving {d}" for p in ("red circle", "blue square") for d in ("left", "up")]
    (tmp_path / "stages" / "data.json").write_text(json.dumps({"heldout": heldout}))
    examples = dict(quickstart_examples(tmp_path / "latte"))
    assert examples["Held-out combinations (never seen together in training)"] == [
        "a red circle moving left", "a blue square moving left"]
    assert quickstart_examples(tmp_path / "elsewhere" / "run") == []  # not a quickstart: no examples
