"""Load SavedModels with only `tensorflow` and `tensorflow_text` imported and measure them.

    python tests/compression/fresh_process.py EXAMPLES_DIR SAVED_MODEL...

Prints JSON: which modules of this project were imported (none may be), and per SavedModel
the sums of `score_examples` over the eval split, `score` of two texts, a greedy
completion, and the dtypes of the stored weights. Deliberately imports nothing else, so
it shows what a server that has only TensorFlow and tensorflow-text gets.
"""

import glob
import json
import os
import sys

import tensorflow as tf
import tensorflow_text  # noqa: F401  (the tokenizer's ops)


def measure(examples_dir, saved_model):
    model = tf.saved_model.load(saved_model)
    files = sorted(glob.glob(os.path.join(examples_dir, "eval-*.tfrecord")))
    sums = {"nll": 0.0, "num_tokens": 0.0, "num_bytes": 0.0}
    for records in tf.data.TFRecordDataset(files).batch(16):
        out = model.signatures["score_examples"](examples=records)
        for key in sums:
            sums[key] += float(tf.reduce_sum(tf.cast(out[key], tf.float64)))
    scored = model.signatures["score"](text=tf.constant(
        ["Return the square root of x.", "Decode JSON text into Python objects."]))
    completion = model.signatures["generate"](
        prompt=tf.constant(["Return the"]), max_new_tokens=tf.constant(6),
        temperature=tf.constant(0.0), top_k=tf.constant(0), top_p=tf.constant(1.0),
        seed=tf.constant(0))["completion"]
    prefix = os.path.join(saved_model, "variables", "variables")
    reader = tf.train.load_checkpoint(prefix)
    dtypes = {name: reader.get_tensor(name).dtype.name
              for name, _ in tf.train.list_variables(prefix) if name.startswith("model/")}
    return {"sums": sums, "score_nll": scored["nll"].numpy().tolist(),
            "score_tokens": scored["num_tokens"].numpy().tolist(),
            "completion": completion.numpy()[0].decode("utf-8"), "dtypes": dtypes}


def main():
    examples_dir, saved_models = sys.argv[1], sys.argv[2:]
    results = {path: measure(examples_dir, path) for path in saved_models}
    project = sorted(name for name in sys.modules
                     if name.split(".")[0] in ("components", "models", "pipeline", "tests"))
    print(json.dumps({"project_modules": project, "models": results}))


if __name__ == "__main__":
    main()
