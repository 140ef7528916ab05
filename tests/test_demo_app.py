"""``latte demo`` without a browser: request validation, the queue (bounds, fairness, cancellation), the Gradio
endpoint through ``gradio_client`` (seeded output equals ``latte sample``), the missing-model page, the CLI; and
for frame-conditioned models the first-frame image, the video to continue and the frames control."""
import dataclasses
import json
import time

import numpy as np
import pytest
import torch

from latte.apps.demo import (DemoRequest, GeneratorOptions, LatteGenerator, Limits, QueueFull, RequestError,
                             RequestQueue, Stage, build_app, launch, run_request, validate_request)
from latte.models import Latte, LatteConfig
from latte.sampling import LattePipeline, SampleOutput, save_videos

from helpers import (FakeTextEncoder, free_port, require, tiny_model, wait_for, write_text_run, write_video)


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


def fetch(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


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


# ------------------------------------------------------------------------- given frames (frame-conditioned models)
FC_OPTS = GeneratorOptions(title="fc", conditioning="text", samplers=("ddim",), sampler="ddim", steps=5,
                           guidance=2.0, size="4 frames of 8x8 px", frame_conditioning=True)


def test_validate_request_takes_a_first_frame_a_video_to_continue_and_frames(tmp_path):
    image = np.full((8, 8, 3), 9, np.uint8)
    req = validate_request({"prompt": "x", "image": image, "extend": "", "frames": 6}, FC_OPTS)
    assert req.image.shape == (1, 8, 8, 3) and req.extend is None and req.frames == 6
    assert req.sampling_options()["image"].shape == (8, 8, 3)
    clip = write_video(tmp_path / "clip.mp4", 5, 8, 8)  # an upload arrives as a path in Gradio's folder
    req = validate_request({"prompt": "x", "extend": str(clip)}, FC_OPTS)
    assert req.extend.shape == (5, 8, 8, 3) and req.frames == 0 and "frames" not in req.sampling_options()
    plain = validate_request({"prompt": "x", "image": None, "extend": None}, FC_OPTS)
    assert plain.sampling_options() == {}


@pytest.mark.parametrize("values, message, limits", [
    ({"image": np.zeros((8, 8, 3), np.uint8)}, "This model was not trained with given frames "
     "(model.frame_conditioning: false): leave the first frame empty.", None),
    ({"extend": "clip"}, "leave the video to continue empty", None),
    ({"image": np.zeros((8, 8, 3), np.uint8), "extend": "clip"}, "Give a first frame or a video to continue, not "
     "both.", FC_OPTS),
    ({"extend": "clip", "frames": 5}, "Frames (5) must be more than the video to continue has (5), or 0 for one "
     "more clip.", FC_OPTS),
    ({"extend": "clip"}, "The video to continue: 5 frames, at most 4 are accepted.", Limits(max_frames=4)),
    ({"extend": "clip"}, "The video to continue: 8x8 px, at most 32 pixels per frame are accepted.",
     Limits(max_given_pixels=32)),
    ({"extend": "not_a_video"}, "The video to continue: cannot be read as a video (mp4, ...): unreadable", FC_OPTS),
    ({"image": "not_a_video"}, "The first frame: cannot be read as an image (png, jpg, ...): unreadable", FC_OPTS),
    ({"image": np.zeros((8, 8, 3), np.float32)}, "The first frame: expected uint8 (H, W, 3)", FC_OPTS),
    ({"image": 3}, "The first frame: expected an uploaded file, got int.", FC_OPTS),
    ({"frames": 65}, "Frames must be a whole number from 0 to 64, got 65", FC_OPTS),
])
def test_validate_request_rejects_bad_given_frames(tmp_path, values, message, limits):
    write_video(tmp_path / "clip.mp4", 5, 8, 8)
    (tmp_path / "not_a_video").write_bytes(b"no video here")
    values = {k: str(tmp_path / v) + (".mp4" if v == "clip" else "") if isinstance(v, str) else v
              for k, v in values.items()}
    options = limits if isinstance(limits, GeneratorOptions) else (OPTS if limits is None else FC_OPTS)
    with pytest.raises(RequestError) as info:
        validate_request({"prompt": "x", **values}, options, limits if isinstance(limits, Limits) else Limits())
    assert message in str(info.value)
    assert str(tmp_path) not in str(info.value)  # the upload's path is not shown


@pytest.fixture(scope="module")
def fc_generator():
    """A tiny frame-conditioned text model (4 frames of 8x8 px, identity autoencoder) behind the demo."""
    from latte.encoders.autoencoders import IdentityAutoencoder

    model = tiny_model(0, conditioning="text", text_dim=16, frame_conditioning=True)
    return LatteGenerator(LattePipeline(model, IdentityAutoencoder(), FakeTextEncoder()))


def test_latte_generator_makes_image_to_video_and_extensions(fc_generator, tmp_path):
    opts = fc_generator.options()
    assert opts.frame_conditioning
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    req = validate_request({"prompt": "a red circle", "image": image, "seed": 2, "steps": 2, "num_videos": 2},
                           opts)
    out = fc_generator.generate(req, lambda *a: None)
    assert out.videos.shape == (2, 4, 8, 8, 3) and (out.videos[:, 0] == image).all()  # held exactly
    ref = fc_generator.pipe(prompts=["a red circle"], image=image, num_videos=2, seed=2, sampler=req.sampler,
                            steps=2, cfg_scale=req.guidance, progress=False)
    np.testing.assert_array_equal(out.videos, ref.videos)  # the page's request is the pipeline's call
    video = np.random.default_rng(1).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    req = validate_request({"prompt": "a red circle", "extend": video, "frames": 9, "seed": 2, "steps": 2}, opts)
    result = run_request(fc_generator, req, tmp_path)
    record = result.records[0]
    assert record["frames"] == 9 and record["given_frames"]["mode"] == "extend"
    assert record["given_frames"]["given_frames"] == 5 and "source" not in record["given_frames"]
    from latte.apps.demo import caption

    assert "continues a video" in caption(record)


def test_a_model_without_frame_conditioning_refuses_given_frames(text_generator, tmp_path):
    opts = text_generator.options()
    assert not opts.frame_conditioning
    with pytest.raises(RequestError, match="model.frame_conditioning: false"):
        validate_request({"prompt": "x", "image": np.zeros((16, 16, 3), np.uint8)}, opts)
    req = DemoRequest(prompt="x", steps=2, image=np.zeros((1, 16, 16, 3), np.uint8))  # past the page: the pipeline
    with pytest.raises(RequestError, match=r"image: this model was not trained with given frames"):
        run_request(text_generator, req, tmp_path)


def test_cascade_generator_passes_given_frames_to_a_frame_conditioned_latte_base(fc_generator):
    from latte.apps.demo import CascadeGenerator
    from latte.sampling.cascade import CascadePipeline, LatteBaseStage

    gen = CascadeGenerator(CascadePipeline(base=LatteBaseStage(fc_generator.pipe)))
    opts = gen.options()
    assert opts.frame_conditioning and opts.stages == ()
    image = np.random.default_rng(2).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    req = validate_request({"prompt": "a red circle", "image": image, "frames": 6, "seed": 1, "steps": 2}, opts)
    out = gen.generate(req, lambda *a: None)
    assert out.videos.shape == (1, 6, 8, 8, 3) and (out.videos[0, 0] == image).all()
    assert out.records[0]["stages"][0]["given_frames"]["mode"] == "image"
    assert not CascadeGenerator(FakeCascade()).options().frame_conditioning


def test_api_uploads_a_first_frame_and_refuses_server_paths(tmp_path, tmp_path_factory):
    """Through the page's endpoint: an uploaded image becomes frame 0; a file that was not uploaded is refused by
    Gradio before our code sees it."""
    require("gradio")
    import urllib.request

    from PIL import Image

    client_mod = require("gradio_client")
    run = write_text_run(tmp_path_factory.mktemp("fc") / "run", frame_conditioning=True)  # 8 frames of 16x16
    queue = RequestQueue(LatteGenerator(LattePipeline.load(run)), tmp_path / "out")
    app = build_app(queue)
    _, url, _ = launch(app, queue, port=free_port(), block=False, quiet=True)
    try:
        Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(tmp_path / "first.png")
        client = client_mod.Client(url, verbose=False, download_files=False)
        *_, settings, _, status = client.predict(
            "a red circle moving left", "", None, 4, "ddim", 2, 1.0, 1, [], "", 0,
            client_mod.handle_file(str(tmp_path / "first.png")), None, api_name="/generate")
        assert "Done in" in status
        record = json.loads(settings)
        assert record["given_frames"]["mode"] == "image" and record["frames"] == 8
        clip = write_video(tmp_path / "clip.mp4", 5, 16, 16)
        *_, settings, _, status = client.predict(
            "a red circle moving left", "", None, 4, "ddim", 2, 1.0, 1, [], "", 12, None,
            client_mod.handle_file(str(clip)), api_name="/generate")
        record = json.loads(settings)
        assert record["given_frames"]["mode"] == "extend" and record["frames"] == 12

        def raw_call(prompt: str, extend) -> str:  # the HTTP API without gradio_client (which would upload)
            body = json.dumps({"data": [prompt, "", None, 4, "ddim", 2, 1.0, 1, [], "", 0, None, extend, 0]}).encode()
            post = urllib.request.Request(url + "gradio_api/call/generate", body, {"Content-Type": "application/json"})
            event = json.loads(urllib.request.urlopen(post, timeout=30).read())["event_id"]
            return fetch(url + f"gradio_api/call/generate/{event}").decode()

        assert "The prompt is empty" in raw_call("", None)  # our messages reach the caller ...
        stream = raw_call("a red circle", {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}})
        assert "event: error" in stream and '"error": null' in stream  # ... this one is Gradio's refusal
        assert len(queue.results()) == 2  # nothing was queued
    finally:
        app.close()
        queue.close()


@pytest.mark.parametrize("values, message, options", [
    ({"context_frames": 2}, "model.frame_conditioning: false here", "plain"),
    ({"context_frames": 2}, "Context frames apply only when the video is extended (a video to continue, or more "
     "frames than one clip of 4)", "fc"),
    ({"context_frames": 2, "frames": 4}, "Context frames apply only when the video is extended", "fc"),
    ({"context_frames": 4, "frames": 9}, "Context frames must be a whole number from 0 to 3, got 4", "fc"),
    ({"context_frames": 3, "extend": np.zeros((2, 8, 8, 3), np.uint8)},
     "Context frames (3) must be at most the frames of the video to continue (2).", "fc"),
])
def test_validate_request_checks_context_frames(values, message, options):
    opts = dataclasses.replace(FC_OPTS, clip_frames=4)
    opts = opts if options == "fc" else dataclasses.replace(opts, frame_conditioning=False)
    with pytest.raises(RequestError) as info:
        validate_request({"prompt": "x", **values}, opts)
    assert message in str(info.value)


def test_context_frames_reach_the_pipeline(fc_generator, tmp_path):
    opts = fc_generator.options()
    assert opts.clip_frames == 4
    req = validate_request({"prompt": "a red circle", "frames": 9, "context_frames": 1, "seed": 2, "steps": 2}, opts)
    assert req.sampling_options() == {"frames": 9, "context_frames": 1}
    out = fc_generator.generate(req, lambda *a: None)
    ref = fc_generator.pipe(prompts=["a red circle"], frames=9, context_frames=1, seed=2, sampler=req.sampler,
                            steps=2, cfg_scale=req.guidance, progress=False)
    np.testing.assert_array_equal(out.videos, ref.videos)
    other = fc_generator.pipe(prompts=["a red circle"], frames=9, context_frames=2, seed=2, sampler=req.sampler,
                              steps=2, cfg_scale=req.guidance, progress=False)
    assert not np.array_equal(out.videos, other.videos)  # the setting changes the video
    from latte.apps.demo import CascadeGenerator
    from latte.sampling.cascade import CascadePipeline, LatteBaseStage

    assert CascadeGenerator(CascadePipeline(base=LatteBaseStage(fc_generator.pipe))).options().clip_frames == 4
