"""``latte demo``: a Gradio page over the sampling API.

Three layers, so that the request logic runs (and is tested) without a browser:

1. **generators**, what the page drives: :class:`LatteGenerator` wraps a :class:`~latte.sampling.LattePipeline`,
   :class:`CascadeGenerator` a cascade (its optional stages become switches on the page). Each has
   ``options()`` (what the page shows: samplers, defaults, classes, stages, examples) and
   ``generate(request, on_step) -> SampleOutput``.
2. **request logic** (no Gradio): :func:`validate_request` turns page values into a :class:`DemoRequest` or a
   :class:`RequestError` whose message the page shows; :func:`run_request` samples and writes mp4 + GIF + JSON
   sidecar into the server's own output folder; :class:`RequestQueue` is the bounded FIFO queue whose single
   worker owns the model, with cancellation and the gallery of this server's results.
3. **the page**: :func:`build_app` (Gradio Blocks) and :func:`launch`.

Safety: every input is text or a number, except for a model trained with frame conditioning: a first-frame image
and a video to continue, uploaded (at most 1 MB, into Gradio's own folder; Gradio refuses any other path) and
bounded in frames and pixels before decoding (:class:`Limits`); no path fields. Files are written only in a fresh
folder of the server's own (a temporary directory unless given); the server binds 127.0.0.1 unless told
otherwise. Fairness: one worker, first come first served, at most one waiting-or-running request per browser
session, and each request's work is bounded (:class:`Limits`), so no request can starve the others.
"""
import asyncio
import inspect
import itertools
import json
import logging
import math
import secrets
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Protocol, Sequence, Union

import numpy as np

from latte.sampling import SAMPLERS, LattePipeline, SampleOutput, save_videos
from latte.sampling.given_frames import read_given

__all__ = ["Limits", "Stage", "GeneratorOptions", "DemoRequest", "DemoResult", "Generator", "LatteGenerator",
           "CascadeGenerator", "RequestError", "QueueFull", "Cancelled", "Job", "RequestQueue", "validate_request",
           "run_request", "build_app", "launch", "LOOPBACK_HOSTS"]

log = logging.getLogger(__name__)

OnStep = Callable[[str, int, int], None]  # (stage name, steps done, total steps of that stage)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


# ---------------------------------------------------------------------------------------------------- options
@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how many requests the server holds."""

    max_prompt_chars: int = 300
    max_steps: int = 250
    max_guidance: float = 30.0
    max_videos: int = 4
    max_seed: int = 2**31 - 1
    max_frames: int = 64  # frames of one video (the frames control), and of a video to continue
    max_given_pixels: int = 1024 * 1024  # pixels per frame of a first-frame image or a video to continue
    queue_size: int = 4  # requests waiting or running; one more is refused with a "queue full" message
    gallery_size: int = 24  # newest results shown in the gallery


@dataclass(frozen=True)
class Stage:
    """An optional stage the page shows a switch for (e.g. the cascade's interpolation)."""

    name: str  # the name the generator receives
    label: str  # what the page shows
    default: bool = True


@dataclass(frozen=True)
class GeneratorOptions:
    """What the page offers for one loaded model."""

    title: str  # e.g. the checkpoint
    conditioning: str  # 'text', 'class' or 'none'
    samplers: tuple[str, ...]
    sampler: str  # defaults of the model
    steps: int
    guidance: float
    size: str  # e.g. "8 frames of 32x32 px"
    fps: float = 8.0
    classes: tuple[str, ...] = ()  # class-conditional models: the names (or ids) to choose from
    stages: tuple[Stage, ...] = ()
    examples: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (heading, prompts or class names)
    supports_cache: bool = False  # the generator takes a step-cache setting (``cache=``)
    frame_conditioning: bool = False  # the model takes a first-frame image and a video to continue
    clip_frames: int = 0  # frames of one generated clip (bounds the context of an extension); 0 = unknown


@dataclass(frozen=True)
class DemoRequest:
    """One validated request (see :func:`validate_request`); ``seed`` is the one used (never -1). ``frames``: 0 =
    the model's (for ``extend``: one more clip); ``image``: uint8 ``(1, H, W, 3)``, the first frame
    (image-to-video); ``extend``: uint8 ``(F, H, W, 3)``, the video to continue (frame-conditioned models)."""

    prompt: str = ""
    negative_prompt: str = ""
    class_label: str = ""
    seed: int = 0
    sampler: str = "ddim"
    steps: int = 50
    guidance: float = 1.0
    num_videos: int = 1
    stages: tuple[str, ...] = ()  # names of the optional stages to run
    cache: str = ""  # step-cache setting, '' = off (passed as ``cache=`` to generators that support it)
    frames: int = 0
    image: Optional[np.ndarray] = field(default=None, compare=False, repr=False)
    extend: Optional[np.ndarray] = field(default=None, compare=False, repr=False)
    context_frames: int = 0  # extension: frames of the previous clip given to the next; 0 = the pipeline's (half)

    def sampling_options(self) -> dict:
        """The keyword arguments of the pipeline for ``frames``, ``image``, ``extend`` and ``context_frames``
        (only those set)."""
        options = {"frames": self.frames or None, "image": None if self.image is None else self.image[0],
                   "extend": self.extend, "context_frames": self.context_frames or None}
        return {k: v for k, v in options.items() if v is not None}


class RequestError(ValueError):
    """Bad input or a request the server refuses; the message is meant for the page."""


class QueueFull(RequestError):
    pass


class Cancelled(Exception):
    """Raised inside the sampler loop (through its step callback) when the request was cancelled."""


class Generator(Protocol):
    def options(self) -> GeneratorOptions: ...

    def generate(self, request: DemoRequest, on_step: OnStep) -> SampleOutput:
        """uint8 videos ``(N, F, H, W, 3)`` + one record per video; ``on_step`` after every sampler step (it
        raises :class:`Cancelled` to stop). Records may carry ``fps`` (else ``options().fps`` is used)."""
        ...


# ------------------------------------------------------------------------------------------------- generators
class LatteGenerator:
    """A :class:`LattePipeline` (text-, class-conditional or unconditional) for the page."""

    def __init__(self, pipe: LattePipeline, examples: Sequence[tuple[str, Sequence[str]]] = (), fps: float = 8.0,
                 title: Optional[str] = None):
        self.pipe = pipe
        self.fps = float(fps)
        self.examples = tuple((head, tuple(items)) for head, items in examples)
        self.title = title or str(pipe.source.get("checkpoint", "Latte model"))

    def options(self) -> GeneratorOptions:
        pipe, cfg = self.pipe, self.pipe.model.config
        factor = pipe.autoencoder.downsample_factor if pipe.autoencoder is not None else 1
        side = cfg.input_size * factor
        classes: tuple[str, ...] = ()
        if pipe.conditioning == "class":
            classes = tuple(pipe.class_names or [str(i) for i in range(cfg.num_classes)])
        return GeneratorOptions(
            title=self.title, conditioning=pipe.conditioning, samplers=SAMPLERS, sampler=pipe.defaults.sampler,
            steps=pipe.defaults.steps, guidance=pipe.defaults.cfg_scale,
            size=f"{cfg.num_frames} frames of {side}x{side} px", fps=self.fps, classes=classes,
            examples=self.examples, supports_cache="cache" in inspect.signature(pipe.__call__).parameters,
            frame_conditioning=bool(cfg.frame_conditioning), clip_frames=int(cfg.num_frames))

    def generate(self, request: DemoRequest, on_step: OnStep) -> SampleOutput:
        kwargs = dict(num_videos=request.num_videos, seed=request.seed, sampler=request.sampler,
                      steps=request.steps, cfg_scale=request.guidance, batch_size=request.num_videos,
                      progress=False, callback=lambda step, total: on_step("sampling", step, total),
                      **request.sampling_options())
        if self.pipe.conditioning == "text":
            kwargs.update(prompts=[request.prompt], negative_prompt=request.negative_prompt)
        elif self.pipe.conditioning == "class":
            kwargs.update(classes=[request.class_label])
        if request.cache:  # the step cache (issue 18): shown on the page once the pipeline takes ``cache=``
            kwargs["cache"] = request.cache
        return self.pipe(**kwargs)


STAGE_LABELS = {"interp": "Temporal interpolation", "vsr": "Super-resolution (x4)"}


class CascadeGenerator:
    """A text-to-video cascade whose optional stages become switches on the page.

    The cascade must provide: ``conditioning`` ('text'), ``defaults`` (``sampler``, ``steps``, ``cfg_scale`` of
    the base stage), ``optional_stages`` (names of the loaded stages after the base, e.g. ``["interp", "vsr"]``),
    ``describe_size() -> str`` (optional) and ``__call__(prompts=, num_videos=, seed=, sampler=, steps=,
    cfg_scale=, negative_prompt=, stages=[names to run], batch_size=, progress=False, callback=)`` returning a
    :class:`SampleOutput` of uint8 videos whose records carry ``fps``; ``callback(stage, step, total)`` is called
    after every sampler step of every stage and may raise to stop. Optionally ``frame_conditioning`` (True: its
    ``__call__`` takes ``image=`` / ``extend=`` / ``context_frames=``), ``clip_frames`` (frames of one base clip)
    and ``frames=`` (base frames; passed only when set).
    """

    def __init__(self, cascade, examples: Sequence[tuple[str, Sequence[str]]] = (), fps: float = 8.0,
                 title: str = "LaVie cascade"):
        self.cascade = cascade
        self.fps = float(fps)
        self.examples = tuple((head, tuple(items)) for head, items in examples)
        self.title = title

    def options(self) -> GeneratorOptions:
        c = self.cascade
        size = c.describe_size() if hasattr(c, "describe_size") else "size depends on the stages"
        stages = tuple(Stage(name, STAGE_LABELS.get(name, name)) for name in c.optional_stages)
        return GeneratorOptions(
            title=self.title, conditioning=c.conditioning, samplers=SAMPLERS, sampler=c.defaults.sampler,
            steps=c.defaults.steps, guidance=c.defaults.cfg_scale, size=size, fps=self.fps, stages=stages,
            examples=self.examples, supports_cache="cache" in inspect.signature(c.__call__).parameters,
            frame_conditioning=bool(getattr(c, "frame_conditioning", False)),
            clip_frames=int(getattr(c, "clip_frames", 0) or 0))

    def generate(self, request: DemoRequest, on_step: OnStep) -> SampleOutput:
        kwargs = dict(prompts=[request.prompt], negative_prompt=request.negative_prompt,
                      num_videos=request.num_videos, seed=request.seed, sampler=request.sampler,
                      steps=request.steps, cfg_scale=request.guidance, stages=list(request.stages),
                      batch_size=request.num_videos, progress=False, callback=on_step,
                      **request.sampling_options())
        if request.cache:
            kwargs["cache"] = request.cache
        return self.cascade(**kwargs)


# ------------------------------------------------------------------------------------------------ validation
def _integer(value, name: str, low: int, high: int) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RequestError(f"{name} must be a whole number from {low} to {high}, got {value!r}.") from None
    if isinstance(value, bool) or not math.isfinite(number) or number != int(number) or not low <= number <= high:
        raise RequestError(f"{name} must be a whole number from {low} to {high}, got {value!r}.")
    return int(number)


def _text(value, name: str, limit: int) -> str:
    text = "" if value is None else str(value).strip()
    if len(text) > limit:
        raise RequestError(f"{name} is too long: {len(text)} characters (at most {limit}).")
    return text


GIVEN_NAMES = {"image": "The first frame", "extend": "The video to continue"}


def _is_empty(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _given(value, kind: str, limits: Limits) -> np.ndarray:
    """A first-frame image or a video to continue (a path, e.g. Gradio's upload, or a uint8 array) -> uint8
    ``(F, H, W, 3)`` within the limits; what is wrong becomes a :class:`RequestError`."""
    if not isinstance(value, (str, Path, np.ndarray)):
        raise RequestError(f"{GIVEN_NAMES[kind]}: expected an uploaded file, got {type(value).__name__}.")
    try:
        frames, _ = read_given(value, kind, max_frames=limits.max_frames, max_pixels=limits.max_given_pixels)
    except ValueError as e:  # the sampling layer's message, without the command-line option and the upload path
        prefix = f"{kind}:" if isinstance(value, np.ndarray) else f"--{kind} {Path(value)}:"
        raise RequestError(f"{GIVEN_NAMES[kind]}: {str(e).removeprefix(prefix).strip()}.") from None
    return frames


def validate_request(values: dict, options: GeneratorOptions, limits: Limits = Limits()) -> DemoRequest:
    """Page values (``prompt``, ``negative_prompt``, ``class_label``, ``seed`` (-1 = random), ``sampler``,
    ``steps``, ``guidance``, ``num_videos``, ``stages`` (names), ``cache``, ``frames`` (0 = the model's),
    ``image`` / ``extend`` (frame-conditioned models: a first frame, a video to continue; an uploaded file's path
    or a uint8 array), ``context_frames`` (0 = half a clip)) -> a :class:`DemoRequest`.

    Missing values take the model's defaults; a bad one raises :class:`RequestError` naming the field and what
    is allowed."""
    prompt = _text(values.get("prompt"), "The prompt", limits.max_prompt_chars)
    negative = _text(values.get("negative_prompt"), "The negative prompt", limits.max_prompt_chars)
    class_label = "" if values.get("class_label") is None else str(values.get("class_label")).strip()
    if options.conditioning == "text" and not prompt:
        raise RequestError("The prompt is empty: describe the video, e.g. "
                           f"'{_first_example(options) or 'a red circle moving left'}'.")
    if options.conditioning != "text" and (prompt or negative):
        raise RequestError(f"This model is not text-conditional (conditioning '{options.conditioning}'): "
                           "leave the prompts empty.")
    if options.conditioning == "class" and class_label not in options.classes:
        shown = ", ".join(options.classes[:8]) + (", ..." if len(options.classes) > 8 else "")
        raise RequestError(f"Choose a class from the list ({shown}); got {class_label!r}.")
    seed = _integer(values.get("seed", -1), "The seed", -1, limits.max_seed)
    if seed == -1:
        seed = secrets.randbelow(limits.max_seed + 1)
    sampler = str(values.get("sampler") or options.sampler)
    if sampler not in options.samplers:
        raise RequestError(f"Unknown sampler {sampler!r}: choose one of {', '.join(options.samplers)}.")
    steps = _integer(values.get("steps", options.steps), "Steps", 1, limits.max_steps)
    try:
        guidance = float(values.get("guidance", options.guidance))
    except (TypeError, ValueError):
        guidance = math.nan
    if not math.isfinite(guidance) or not 1.0 <= guidance <= limits.max_guidance:
        raise RequestError(f"Guidance must be a number from 1 to {limits.max_guidance:g} (1 = no guidance), "
                           f"got {values.get('guidance')!r}.")
    if options.conditioning == "none" and guidance != 1.0:
        raise RequestError("This model is unconditional: guidance must be 1.")
    num_videos = _integer(values.get("num_videos", 1), "Number of videos", 1, limits.max_videos)
    known = [s.name for s in options.stages]
    stages = values.get("stages")
    stages = [s.name for s in options.stages if s.default] if stages is None else list(stages)
    unknown = [s for s in stages if s not in known]
    if unknown:
        raise RequestError(f"Unknown stage(s) {unknown}: this model has {known or 'no optional stages'}.")
    cache = "" if values.get("cache") is None else str(values.get("cache")).strip()
    if cache and not options.supports_cache:
        raise RequestError("This model's pipeline has no step cache: leave the cache setting empty.")
    frames = _integer(values.get("frames") or 0, "Frames", 0, limits.max_frames)
    given = {k: values.get(k) for k in ("image", "extend") if not _is_empty(values.get(k))}
    if given and not options.frame_conditioning:
        raise RequestError("This model was not trained with given frames (model.frame_conditioning: false): leave "
                           f"{' and '.join(GIVEN_NAMES[k].lower() for k in given)} empty.")
    if len(given) == 2:
        raise RequestError("Give a first frame or a video to continue, not both.")
    image, extend = (_given(given[k], k, limits) if k in given else None for k in ("image", "extend"))
    if extend is not None and frames and frames <= len(extend):
        raise RequestError(f"Frames ({frames}) must be more than the video to continue has ({len(extend)}), or 0 "
                           "for one more clip.")
    context = _integer(values.get("context_frames") or 0, "Context frames", 0,
                       options.clip_frames - 1 if options.clip_frames > 1 else limits.max_frames)
    if context:
        if not options.frame_conditioning:
            raise RequestError("Context frames apply to extensions by a model trained with given frames "
                               "(model.frame_conditioning: false here): set them to 0.")
        if extend is None and not (options.clip_frames and frames > options.clip_frames):
            clip = f"one clip of {options.clip_frames}" if options.clip_frames else "one clip"
            raise RequestError("Context frames apply only when the video is extended (a video to continue, or "
                               f"more frames than {clip}): set them to 0 or extend the video.")
        if extend is not None and context > len(extend):
            raise RequestError(f"Context frames ({context}) must be at most the frames of the video to continue "
                               f"({len(extend)}).")
    return DemoRequest(prompt=prompt, negative_prompt=negative, class_label=class_label, seed=seed, sampler=sampler,
                       steps=steps, guidance=guidance, num_videos=num_videos,
                       stages=tuple(s for s in known if s in stages), cache=cache, frames=frames, image=image,
                       extend=extend, context_frames=context)


def _first_example(options: GeneratorOptions) -> str:
    return next((items[0] for _, items in options.examples if items), "")


# ------------------------------------------------------------------------------------------------ running
@dataclass
class DemoResult:
    """Files of one finished request (all inside the server's output folder) and their sidecars."""

    videos: list[Path]  # mp4, one per video
    gifs: list[Path]
    records: list[dict]  # the sidecar JSON of each video (settings actually used)
    seconds: float


def run_request(generator: Generator, request: DemoRequest, out_dir: Union[str, Path],
                on_step: Optional[OnStep] = None) -> DemoResult:
    """Sample ``request`` and write ``{index}.mp4``, ``.gif`` and ``.json`` into a new folder under ``out_dir``.

    The generator's own refusals (``ValueError``, e.g. guidance on a model without a null class) become
    :class:`RequestError`; :class:`Cancelled` raised by ``on_step`` propagates."""
    start = time.perf_counter()
    try:
        output = generator.generate(request, on_step or (lambda stage, step, total: None))
    except ValueError as e:
        raise RequestError(str(e)) from e
    fps = output.records[0].get("fps", generator.options().fps) if output.records else generator.options().fps
    folder = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=out_dir))
    sidecars = save_videos(output, folder, formats=("mp4", "gif"), fps=fps)
    records = [json.loads(p.read_text()) for p in sidecars]
    return DemoResult(videos=[folder / r["files"]["mp4"] for r in records],
                      gifs=[folder / r["files"]["gif"] for r in records], records=records,
                      seconds=time.perf_counter() - start)


_job_ids = itertools.count(1)


class Job:
    """One request in the :class:`RequestQueue`: ``state`` is queued -> running -> done | failed | cancelled."""

    def __init__(self, request: DemoRequest, session: str = ""):
        self.id = next(_job_ids)
        self.request = request
        self.session = session
        self.state = "queued"
        self.stage, self.step, self.total = "", 0, 0
        self.result: Optional[DemoResult] = None
        self.error = ""
        self._cancel = threading.Event()
        self._done = threading.Event()

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """True once the job is done, failed or cancelled."""
        return self._done.wait(timeout)

    def _finish(self, state: str, error: str = "") -> None:
        self.state, self.error = state, error
        self._done.set()


class RequestQueue:
    """A bounded FIFO queue of requests and the one worker thread that owns the model.

    ``submit`` refuses with :class:`QueueFull` when ``limits.queue_size`` requests are waiting or running, and
    with :class:`RequestError` when the session already has one; ``cancel`` removes a waiting request at once
    and stops a running one at its next sampler step, freeing its slot either way."""

    def __init__(self, generator: Generator, out_dir: Optional[Union[str, Path]] = None, limits: Limits = Limits()):
        self.generator = generator
        self.options = generator.options()
        self.limits = limits
        self.out_dir = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="latte-demo-"))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._gallery: deque[dict] = deque(maxlen=limits.gallery_size)  # newest first
        self._waiting: deque[Job] = deque()
        self._running: Optional[Job] = None
        self._closed = False
        self._cond = threading.Condition()
        self._worker = threading.Thread(target=self._work, name="latte-demo-worker", daemon=True)
        self._worker.start()

    # -- clients -------------------------------------------------------------------------------------------
    def submit(self, request: DemoRequest, session: str = "") -> Job:
        with self._cond:
            active = list(self._waiting) + ([self._running] if self._running else [])
            if session and any(j.session == session for j in active):
                raise RequestError("You already have a request in the queue: wait for it or cancel it.")
            if len(active) >= self.limits.queue_size:
                raise QueueFull(f"The queue is full ({len(active)} requests waiting or running, the most this "
                                "server takes): try again in a minute.")
            job = Job(request, session)
            self._waiting.append(job)
            self._cond.notify_all()
            return job

    def position(self, job: Job) -> int:
        """Requests ahead of ``job`` (0 when it runs or runs next)."""
        with self._cond:
            if job in self._waiting:
                return list(self._waiting).index(job) + (self._running is not None)
            return 0

    def cancel(self, job: Job) -> bool:
        """Cancel ``job``; False when it had already finished."""
        with self._cond:
            if job in self._waiting:
                self._waiting.remove(job)
                job._finish("cancelled")
                return True
            if job is self._running:
                job._cancel.set()
                return True
            return False

    def cancel_session(self, session: str) -> int:
        """Cancel every waiting or running request of ``session``; returns how many."""
        with self._cond:
            jobs = [j for j in list(self._waiting) + [self._running] if j is not None and j.session == session]
        return sum(self.cancel(j) for j in jobs)

    def results(self) -> list[dict]:
        """This server's results, newest first (at most ``limits.gallery_size``): gif, mp4, caption, record."""
        with self._cond:
            return list(self._gallery)

    def active(self) -> int:
        """Requests waiting or running."""
        with self._cond:
            return len(self._waiting) + (self._running is not None)

    def close(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._closed = True
            for job in self._waiting:
                job._finish("cancelled")
            self._waiting.clear()
            if self._running is not None:
                self._running._cancel.set()
            self._cond.notify_all()
        self._worker.join(timeout)

    # -- the worker ------------------------------------------------------------------------------------------
    def _on_step(self, job: Job, stage: str, step: int, total: int) -> None:
        if job._cancel.is_set():
            raise Cancelled()
        job.stage, job.step, job.total = stage, step, total

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job = self._running = self._waiting.popleft()
                job.state = "running"
            state, error = "done", ""
            try:
                job.result = run_request(self.generator, job.request, self.out_dir,
                                         lambda stage, step, total: self._on_step(job, stage, step, total))
            except Cancelled:
                state = "cancelled"
            except RequestError as e:
                state, error = "failed", str(e)
            except Exception as e:  # keep serving: the page gets a message, the log the traceback
                log.exception("latte demo: request %d failed", job.id)
                state, error = "failed", f"Internal error ({type(e).__name__}: {e}); the server keeps running."
            with self._cond:
                if state == "done":
                    for gif, mp4, record in zip(job.result.gifs, job.result.videos, job.result.records):
                        self._gallery.appendleft({"gif": gif, "mp4": mp4, "caption": caption(record),
                                                  "record": record})
                self._running = None
                job._finish(state, error)
                self._cond.notify_all()


def caption(record: dict) -> str:
    """One line for the gallery: what was asked and with which settings."""
    what = record.get("prompt") or record.get("class_name") or record.get("class_id", "unconditional")
    mode = (record.get("given_frames") or {}).get("mode")
    given = {"image": " · from a first frame", "extend": " · continues a video"}.get(mode, "")
    return (f"{what}{given} · seed {record['seed']} · {record['sampler']} {record['steps']} steps · "
            f"guidance {record['cfg_scale']:g}")


# ------------------------------------------------------------------------------------------------ the page
def _status(job: Job) -> str:
    if job.state == "done":
        seeds = ", ".join(str(r["seed"]) for r in job.result.records)
        return (f"Done in {job.result.seconds:.1f} s: {len(job.result.records)} video(s), seed(s) {seeds}. "
                "Settings below; GIFs to download.")
    if job.state == "cancelled":
        return "Cancelled: the request was stopped and its place in the queue freed."
    return f"Error: {job.error}"


def _json(data) -> str:
    return json.dumps(data, indent=2, default=str)


def build_app(queue: Optional[RequestQueue], missing: str = "", title: str = "Latte demo"):
    """The page. ``queue=None`` gives a page that only shows ``missing`` (e.g. how to make the model)."""
    import gradio as gr

    with gr.Blocks(title=title) as app:
        if queue is None:
            gr.Markdown(f"# {title}\n\n{missing}", elem_id="missing-model")
            return app
        opts, limits = queue.options, queue.limits
        text, cls = opts.conditioning == "text", opts.conditioning == "class"
        given = " · takes a first frame or a video to continue" if opts.frame_conditioning else ""
        gr.Markdown(f"# {title}\n**Model:** `{opts.title}` · {opts.conditioning}-conditional · {opts.size}{given} · "
                    f"{opts.fps:g} fps. Requests are queued (at most {limits.queue_size} at a time).")
        with gr.Row():
            with gr.Column(scale=1):
                prompt = gr.Textbox(label="Prompt", lines=2, visible=text, elem_id="prompt",
                                    placeholder=_first_example(opts))
                negative = gr.Textbox(label="Negative prompt (what to steer away from; empty = none)", visible=text,
                                      elem_id="negative-prompt")
                class_label = gr.Dropdown(choices=list(opts.classes), value=opts.classes[0] if cls else None,
                                          label="Class", visible=cls, elem_id="class-label")
                with gr.Row():
                    seed = gr.Number(value=-1, precision=0, label="Seed (-1 = random)", elem_id="seed")
                    num_videos = gr.Slider(1, limits.max_videos, value=1, step=1, label="Number of videos",
                                           elem_id="num-videos")
                sampler = gr.Dropdown(choices=list(opts.samplers), value=opts.sampler, label="Sampler")
                steps = gr.Slider(1, limits.max_steps, value=min(opts.steps, limits.max_steps), step=1,
                                  label="Steps", elem_id="steps")
                guidance = gr.Slider(1.0, limits.max_guidance, value=opts.guidance, step=0.5,
                                     label="Guidance (1 = none)", visible=opts.conditioning != "none", elem_id="guidance")
                stages = gr.CheckboxGroup(choices=[(s.label, s.name) for s in opts.stages],
                                          value=[s.name for s in opts.stages if s.default], label="Stages",
                                          visible=bool(opts.stages), elem_id="stages")
                cache = gr.Textbox(label="Step cache (empty = off)", visible=opts.supports_cache)
                frames = gr.Slider(0, limits.max_frames, value=0, step=1, elem_id="frames",
                                   label="Frames (0 = the model's; " + ("with a video to continue: the total)"
                                                                       if opts.frame_conditioning else
                                                                       "more = a longer video)"))
                with gr.Row(visible=opts.frame_conditioning):
                    image = gr.Image(label="First frame (image-to-video; optional)", type="numpy",
                                     image_mode="RGB", sources=["upload"], elem_id="first-frame")
                    extend = gr.Video(label="Video to continue (optional)", sources=["upload"], elem_id="extend")
                context = gr.Slider(0, max(opts.clip_frames - 1, 1), value=0, step=1, elem_id="context-frames",
                                    visible=opts.frame_conditioning,
                                    label="Context frames (extending: frames of the previous clip given to the "
                                          "next; 0 = half a clip)")
                with gr.Row():
                    run_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                    cancel_btn = gr.Button("Cancel", elem_id="cancel")
                for heading, items in opts.examples:
                    gr.Examples(examples=[[x] for x in items], inputs=[prompt if text else class_label],
                                label=heading)
            with gr.Column(scale=1):
                status = gr.Markdown("Type a prompt and press Generate." if text else "Press Generate.",
                                     elem_id="status")
                video = gr.Video(label="Video", interactive=False, autoplay=True, loop=True, height=320,
                                 elem_id="video")
                gifs = gr.File(label="GIF download", file_count="multiple", interactive=False, elem_id="gifs")
                settings = gr.Code(label="Settings used (sidecar JSON)", language="json", interactive=False,
                                   max_lines=18, elem_id="settings")
        gallery = gr.Gallery(label="Earlier results on this server (select one for its settings)", columns=8,
                             height=240, preview=False, object_fit="contain", fit_columns=False,
                             elem_id="gallery")
        gallery_records = gr.State([])

        def gallery_value():
            items = queue.results()
            return [(str(i["gif"]), i["caption"]) for i in items], [i["record"] for i in items]

        async def generate(prompt_v, negative_v, class_v, seed_v, sampler_v, steps_v, guidance_v, num_v, stages_v,
                           cache_v, frames_v=0, image_v=None, extend_v=None, context_v=0,
                           request: gr.Request = None,
                           progress=gr.Progress()):  # defaults: API clients may leave the newer inputs out
            values = dict(prompt=prompt_v, negative_prompt=negative_v, class_label=class_v if cls else None,
                          seed=seed_v, sampler=sampler_v, steps=steps_v, guidance=guidance_v, num_videos=num_v,
                          stages=stages_v, cache=cache_v, frames=frames_v, image=image_v, extend=extend_v,
                          context_frames=context_v)
            try:
                job = queue.submit(validate_request(values, opts, limits), session=request.session_hash or "")
            except RequestError as e:
                raise gr.Error(str(e), duration=20, print_exception=False)
            try:  # async: waiting holds no thread, and a cancelled event (page gone) lands in `finally`
                while not job.finished:
                    await asyncio.sleep(0.1)
                    if job.state == "queued":
                        progress(0.0, desc=f"Queued: {queue.position(job)} request(s) ahead")
                    elif job.total:
                        progress((job.step, job.total), desc=f"{job.stage}: step {job.step}/{job.total}")
            finally:
                if not job.finished:  # Gradio cancelled the event (e.g. the page went away): free the slot
                    queue.cancel(job)
            if job.state == "failed":
                raise gr.Error(job.error, duration=20, print_exception=False)
            items, records = gallery_value()
            if job.state != "done":
                return None, None, None, items, records, _status(job)
            result = job.result
            shown = result.records[0] if len(result.records) == 1 else result.records
            return (str(result.videos[0]), [str(p) for p in result.gifs], _json(shown), items, records,
                    _status(job))

        def cancel(request: gr.Request):
            count = queue.cancel_session(request.session_hash or "")
            return "Cancelling..." if count else "Nothing to cancel."

        def page_closed(request: gr.Request):  # the tab was closed or reloaded: its request is not wanted
            queue.cancel_session(request.session_hash or "")

        def show_record(records, evt: gr.SelectData):
            return _json(records[evt.index]) if 0 <= evt.index < len(records) else None

        inputs = [prompt, negative, class_label, seed, sampler, steps, guidance, num_videos, stages, cache, frames,
                  image, extend, context]
        run_btn.click(generate, inputs, [video, gifs, settings, gallery, gallery_records, status],
                      api_name="generate", concurrency_limit=None)
        cancel_btn.click(cancel, None, status, api_name="cancel", concurrency_limit=None)
        gallery.select(show_record, gallery_records, settings, api_name=False)
        app.load(gallery_value, None, [gallery, gallery_records], api_name=False)
        app.unload(page_closed)
    return app


def launch(app, queue: Optional[RequestQueue], host: str = "127.0.0.1", port: Optional[int] = None,
           share: bool = False, block: bool = True, quiet: bool = False):
    """Serve ``app``. Binds to ``host`` (loopback by default); ``share`` asks Gradio for a public link. Only the
    queue's output folder is served besides Gradio's own files."""
    if host not in LOOPBACK_HOSTS or share:
        log.warning("latte demo: reachable from other machines (%s); anyone who can reach it can generate "
                    "videos", "share link" if share else f"--host {host}")
    size = queue.limits.queue_size if queue is not None else 1
    app.queue(max_size=4 * size + 8, default_concurrency_limit=1)  # a backstop: our queue bounds the work
    return app.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block,
                      allowed_paths=[str(queue.out_dir)] if queue is not None else None, show_error=False,
                      max_file_size="1mb", quiet=quiet)  # the page takes no files; Gradio's upload route stays tiny
