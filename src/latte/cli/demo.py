"""``latte demo [--checkpoint RUN_DIR] [--cascade DIR] [--host 127.0.0.1] [--port N] [--share]``: the web app.

Without ``--checkpoint`` it serves the quickstart's model (``quickstart_out/latte``); when that is missing the
page says how to make it. Needs the ``demo`` extra (``pip install latte-video[demo]``: Gradio).
"""
from __future__ import annotations

import json
from pathlib import Path

QUICKSTART_MODEL = Path("quickstart_out") / "latte"
QUICKSTART_MISSING = (
    "No model to serve yet: the quickstart's model `{path}` is not there.\n\n"
    "Make it with one command (about 10 minutes on a laptop CPU, offline):\n\n"
    "```\nlatte quickstart\n```\n\n"
    "then start `latte demo` again in the same folder, or serve another model with "
    "`latte demo --checkpoint RUN_DIR`.")
# captions of colour+shape pairs that the quickstart trains on (the held-out ones come from its stages/data.json)
QUICKSTART_TRAINING_EXAMPLES = ("a yellow triangle moving right", "a blue circle moving down")


def register(sub) -> None:
    p = sub.add_parser(
        "demo", help="web app: generate videos in the browser (Gradio)",
        description="Serve a page to generate videos with a trained or released model: prompt, negative "
                    "prompt, seed, sampler, steps, guidance, number of videos, frames, and for a model trained "
                    "with model.frame_conditioning a first frame (image-to-video) or a video to continue; the "
                    "video, a GIF download, the settings used and a gallery of this server's results. Listens on "
                    "127.0.0.1 only unless --host or --share say otherwise. Needs: pip install 'latte-video[demo]'.")
    p.add_argument("--checkpoint", metavar="RUN_DIR", default=None,
                   help=f"what to serve: anything `latte sample --checkpoint` takes (default: the quickstart's "
                        f"model, {QUICKSTART_MODEL})")
    p.add_argument("--cascade", metavar="DIR", default=None,
                   help="serve a text-to-video cascade (base -> interpolation -> super-resolution) instead; "
                        "its stages get switches on the page")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes it to "
                        "the network)")
    p.add_argument("--port", type=int, default=None, help="port (default: Gradio's 7860, or the next free one)")
    p.add_argument("--share", action="store_true", help="also ask Gradio for a public share link (exposes it)")
    p.add_argument("--queue-size", type=int, default=4, help="requests waiting or running at most (default 4)")
    p.add_argument("--max-videos", type=int, default=4, help="most videos one request may ask for (default 4)")
    p.add_argument("--output-dir", default=None,
                   help="folder for the generated files (default: a new temporary folder)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.set_defaults(func=run)


def quickstart_examples(model_dir: Path) -> list[tuple[str, list[str]]]:
    """Example prompts when ``model_dir`` is a quickstart's model (``OUT/latte`` next to ``OUT/stages/data.json``):
    training combinations and held-out ones (colour + shape pairs never seen together in training)."""
    data = model_dir.parent / "stages" / "data.json"
    if not data.is_file():
        return []
    examples = [("Example prompts (colour + shape pairs seen in training)", list(QUICKSTART_TRAINING_EXAMPLES))]
    heldout = json.loads(data.read_text()).get("heldout", [])
    firsts = {caption.split(" moving")[0]: caption for caption in reversed(heldout)}  # one per pair
    picks = sorted(firsts.values(), key=heldout.index)[:4]
    if picks:
        examples.append(("Held-out combinations (never seen together in training)", picks))
    return examples


def build(args):
    """(app, queue) for the parsed arguments; ``queue`` is None when the page only explains what is missing."""
    import torch

    from latte.apps.demo import CascadeGenerator, LatteGenerator, Limits, RequestQueue, build_app

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    limits = Limits(queue_size=args.queue_size, max_videos=args.max_videos)
    if args.cascade:
        try:
            from latte.sampling.cascade import CascadePipeline
        except ImportError:
            raise FileNotFoundError("--cascade: this version of latte-video has no cascade pipeline "
                                    "(latte.sampling.cascade)") from None
        generator = CascadeGenerator(CascadePipeline.load(args.cascade, device=device), title=args.cascade)
    else:
        from latte.sampling import LattePipeline

        path = Path(args.checkpoint) if args.checkpoint else QUICKSTART_MODEL
        try:
            pipe = LattePipeline.load(path, device=device)
        except FileNotFoundError:
            if args.checkpoint is not None:
                raise
            return build_app(None, missing=QUICKSTART_MISSING.format(path=path)), None
        generator = LatteGenerator(pipe, examples=quickstart_examples(path))
    queue = RequestQueue(generator, args.output_dir, limits)
    return build_app(queue), queue


def run(args) -> int:
    import sys

    try:
        import gradio  # noqa: F401
    except ImportError:
        print("latte demo: needs Gradio: pip install 'latte-video[demo]' (or: pip install 'gradio>=5')",
              file=sys.stderr)
        return 2
    from latte.apps.demo import launch

    try:
        app, queue = build(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"latte demo: {e}", file=sys.stderr)
        return 2
    if queue is not None:
        print(f"latte demo: results are written to {queue.out_dir}")
    try:
        _, local_url, share_url = launch(app, queue, host=args.host, port=args.port, share=args.share, block=False,
                                         quiet=True)
        print(f"latte demo: open {local_url}" + (f" (public link: {share_url})" if share_url else "")
              + " -- Ctrl+C stops the server")
        app.block_thread()
    finally:
        if queue is not None:
            queue.close()
    return 0
