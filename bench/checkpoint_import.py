"""How long importing a GPT-2-small-size checkpoint takes, and how much memory, against
transformers' own `from_pretrained` of the same directory.

Prepares once (under `--work`): a random GPT-2 small (124M parameters: 12 layers, width
768, 50,257 ids, 1,024 positions) saved by transformers (`bench/peers/hf_checkpoint.py`,
with `.venv-ref`'s python: `make reference`). Then, alternately and each in a fresh
process, `--pairs` times:

- ours: `models.checkpoints` `read_checkpoint`, the model built from its config
  (`build_model`, the `CausalLM` a run trains) and `load_weights` (the file's header and
  every tensor's shape checked, then each tensor read and assigned in turn); the seconds
  from reading the config to the last weight assigned, and the process's peak resident
  memory against its memory once TensorFlow and Keras were imported;
- the peer: `GPT2LMHeadModel.from_pretrained` on the same directory, timed the same way.

`--layout keras_hub`: the same model as a KerasHub preset (`GPT2Backbone.save_to_preset`,
made with this environment's keras-hub), imported by ours as above, against keras-hub's own
`Backbone.from_preset` of the directory.

    python -m bench.checkpoint_import [--pairs 3] [--layout huggingface|keras_hub]
                                      [--work /tmp/bench_checkpoint_import]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
_REF_PYTHON = _ROOT / ".venv-ref" / "bin" / "python"
_PEER = _ROOT / "bench" / "peers" / "hf_checkpoint.py"

_OURS = """
import json, resource, sys, time
import keras  # noqa: F401 (imported before the clock starts, as the trainer has it)
sys.path.insert(0, sys.argv[2])
from bench.peers.hf_checkpoint import _rss_mb
from models.checkpoints import load_weights, read_checkpoint, resolve_model_config
from models.factory import build_model
from pipeline.core.config import ModelConfig, TaskConfig
before = _rss_mb()
start = time.perf_counter()
checkpoint = read_checkpoint(sys.argv[1])
model = build_model(resolve_model_config(ModelConfig(), checkpoint), TaskConfig(),
                    checkpoint.vocabulary_size, backbone_arguments=checkpoint.backbone)
built = time.perf_counter()
built_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
load_weights(model, checkpoint)
done = time.perf_counter()
print(json.dumps({"seconds": done - start, "build_seconds": built - start,
                  "load_seconds": done - built, "before_mb": before, "built_peak_mb": built_peak,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "parameters": model.count_params()}))
"""

# GPT-2 small as keras-hub builds it (random weights), saved as a preset.
_MAKE_PRESET = """
import sys
import keras, keras_hub
keras.utils.set_random_seed(0)
keras_hub.models.GPT2Backbone(vocabulary_size=50257, num_layers=12, num_heads=12, hidden_dim=768,
                              intermediate_dim=3072, max_sequence_length=1024
                              ).save_to_preset(sys.argv[1])
"""

# The KerasHub peer: keras-hub's own load of the preset, timed as ours is.
_KERAS_HUB = """
import json, resource, sys, time
import keras_hub
sys.path.insert(0, sys.argv[2])
from bench.peers.hf_checkpoint import _rss_mb
before = _rss_mb()
start = time.perf_counter()
backbone = keras_hub.models.Backbone.from_preset(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - start, "before_mb": before,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _last_json(command: list[str]) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow",
           "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode:
        raise SystemExit(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def _prepared(work: Path, layout: str) -> tuple[Path, list[str]]:
    """The checkpoint directory (made once) and the peer's command without the directory."""
    if layout == "keras_hub":
        checkpoint = work / "gpt2_small_preset"
        if not (checkpoint / "model.weights.h5").exists():
            print(f"making a random GPT-2 small preset at {checkpoint}", file=sys.stderr)
            subprocess.run([sys.executable, "-c", _MAKE_PRESET, str(checkpoint)], check=True,
                           capture_output=True)
        return checkpoint, [sys.executable, "-c", _KERAS_HUB]
    if not _REF_PYTHON.exists():
        raise SystemExit(f"{_REF_PYTHON} is missing: run `make reference` first")
    checkpoint = work / "gpt2_small"
    if not (checkpoint / "model.safetensors").exists():
        print(f"making a random GPT-2 small at {checkpoint}", file=sys.stderr)
        subprocess.run([str(_REF_PYTHON), str(_PEER), "make", str(checkpoint)], check=True,
                       capture_output=True)
    return checkpoint, [str(_REF_PYTHON), str(_PEER), "load"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--layout", choices=("huggingface", "keras_hub"), default="huggingface")
    parser.add_argument("--work", default="/tmp/bench_checkpoint_import")
    args = parser.parse_args()
    checkpoint, peer_command = _prepared(Path(args.work), args.layout)
    size = sum(p.stat().st_size for p in checkpoint.rglob("*") if p.is_file())
    print(f"checkpoint: {checkpoint} ({args.layout}, {size / 1e6:.0f} MB)")
    peer_name = "keras-hub" if args.layout == "keras_hub" else "transformers"
    ratios = []
    for pair in range(args.pairs):
        ours = _last_json([sys.executable, "-c", _OURS, str(checkpoint), str(_ROOT)])
        peer = _last_json([*peer_command, str(checkpoint), str(_ROOT)])
        ratios.append(ours["seconds"] / peer["seconds"])
        print(f"pair {pair + 1}: ours {ours['seconds']:.2f} s (build {ours['build_seconds']:.2f}"
              f" + load {ours['load_seconds']:.2f}), peak {ours['peak_rss_mb']:.0f} MB "
              f"(+{ours['peak_rss_mb'] - ours['before_mb']:.0f} over the imports, "
              f"+{ours['built_peak_mb'] - ours['before_mb']:.0f} once built), "
              f"{ours['parameters']:,} parameters | {peer_name} {peer['seconds']:.2f} s, "
              f"peak {peer['peak_rss_mb']:.0f} MB (+{peer['peak_rss_mb'] - peer['before_mb']:.0f})"
              f" | ratio ours/peer {ratios[-1]:.2f}")
    print(f"median ratio ours/peer (seconds): {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
