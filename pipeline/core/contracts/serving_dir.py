"""The serving directory: TF Serving's layout of numbered SavedModel versions.

    <serving_dir>/<version>/saved_model.pb, variables/, assets/   the SavedModel
    <serving_dir>/<version>/model_card.json                        what was pushed, and why

A version directory appears by a rename of a complete copy, so any directory whose name is
an integer and that holds `saved_model.pb` is complete. Readers (the baseline resolver,
`lmpipe generate`) use no TensorFlow here.

Every push, from whatever pipeline root, looks at the versions and publishes holding a
lock on the serving directory (`push_lock`), so it can check that the version in service
is still the one its model was judged against and publish in one step (a
compare-and-swap).

A model is recognised by the SHA-256 of its SavedModel's files (`saved_model_digest`),
recorded in the card as `model.saved_model_sha256`: the same model has the same digest
whether it comes from a local DAG run, a single-component run or a Vertex step, which an
artifact fingerprint (derived from a cache key or a URI) cannot promise.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass

from pipeline.core.artifacts import write_json_atomic
from pipeline.core.errors import UsageError, first_line
from pipeline.core.files import files_under

MODEL_CARD = "model_card.json"
SAVED_MODEL_FILE = "saved_model.pb"

# TensorFlow's SavedModel fingerprint: hashes of the other files plus a random UUID per save,
# so the same model saved twice would otherwise get two digests.
FINGERPRINT_FILE = "fingerprint.pb"
# What `publish`, `prune` and `write_card` leave when killed outright; an hour is far
# longer than any copy.
_LEFTOVER = re.compile(r"\.\d+\.(tmp|deleting|card)-[0-9a-f]{8}")
LEFTOVER_SECONDS = 3600.0


class VersionTaken(OSError):
    """Another writer published the version number first (`publish` raises it)."""


@dataclass(frozen=True)
class Version:
    """One complete version in a serving directory.

    Attributes:
        number: the version number.
        path: its directory (a SavedModel).
        card: its model card (empty if unreadable).
    """

    number: int
    path: str
    card: dict

    @property
    def model_sha256(self) -> str | None:
        """The digest of the SavedModel this version serves, as its card records it."""
        model = self.card.get("model")
        return model.get("saved_model_sha256") if isinstance(model, dict) else None

    def digest(self) -> str:
        """The SavedModel's digest: from the card, or computed when the card lacks it."""
        return self.model_sha256 or saved_model_digest(self.path)


def saved_model_digest(path: str) -> str:
    """SHA-256 over a SavedModel directory's files (names and bytes), card and TensorFlow's
    per-save fingerprint excluded: the same model saved twice has one digest.

    Args:
        path: a SavedModel directory (on any Beam filesystem).

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256()
    for name, read in _files(path):
        if name in (MODEL_CARD, FINGERPRINT_FILE):
            continue
        digest.update(name.encode() + b"\0")
        digest.update(hashlib.sha256(read()).digest())
    return digest.hexdigest()


def _files(path: str):
    """(relative name, reader) of every file below `path`, sorted by name."""
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    root = FileSystems.join(path, "")
    for meta in files_under(path):
        def read(name=meta.path):
            with FileSystems.open(name, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                return f.read()
        yield meta.path[len(root):], read


def _numbered(serving_dir: str) -> list[int]:
    """Every integer-named entry, complete or not (so new numbers never collide).

    Raises:
        UsageError: `serving_dir` exists but is not a readable directory.
    """
    try:
        names = os.listdir(serving_dir)
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        raise UsageError(f"serving directory {serving_dir}: not a directory") from None
    except OSError as err:
        raise UsageError(f"serving directory {serving_dir}: cannot list ({err.strerror})") from None
    # ASCII only: str.isdigit() also accepts '²' or '١', which int() rejects or renumbers.
    return sorted(int(name) for name in names if name.isascii() and name.isdigit())


def versions(serving_dir: str) -> list[Version]:
    """The complete versions, oldest first."""
    found = []
    for number in _numbered(serving_dir):
        path = os.path.join(serving_dir, str(number))
        if _is_version(path):
            found.append(Version(number=number, path=path, card=read_card(path)))
    return found


def read_card(version_dir: str) -> dict:
    """The model card of a version directory, or {} if it has none."""
    try:
        with open(os.path.join(version_dir, MODEL_CARD), encoding="utf-8") as f:
            card = json.load(f)
    except (OSError, ValueError):  # unreadable, not UTF-8, not JSON
        return {}
    return card if isinstance(card, dict) else {}


def damage(saved_model: str) -> str | None:
    """What is visibly broken in a SavedModel directory (a `saved_model.pb` that does not
    parse or has no serving graph, no variables index), or None. Reads the graph
    definition only: far cheaper than loading it.
    """
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    try:
        with open(os.path.join(saved_model, SAVED_MODEL_FILE), "rb") as f:
            graphs = saved_model_pb2.SavedModel.FromString(f.read()).meta_graphs
    except (OSError, DecodeError) as err:
        return f"{SAVED_MODEL_FILE} does not read ({err})"
    if not any("serve" in graph.meta_info_def.tags for graph in graphs):
        return f"{SAVED_MODEL_FILE} holds no 'serve' graph"
    if not os.path.isfile(os.path.join(saved_model, "variables", "variables.index")):
        return "variables/variables.index is missing"
    return None


def load_problem(saved_model: str) -> str | None:
    """Why a SavedModel directory does not load (its error's first line), or None."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops the model uses)

    try:
        tf.saved_model.load(saved_model)
    except Exception as err:  # noqa: BLE001  (any failure to load is the answer)
        return first_line(err)
    return None


def latest(serving_dir: str) -> Version | None:
    """The highest complete version, or None."""
    found = versions(serving_dir)
    return found[-1] if found else None


def baseline_for(serving_dir: str, candidate_sha256: str | None) -> Version | None:
    """The newest version that is not the candidate itself (by SavedModel digest).

    A rerun after a push finds its own model in service; comparing a model with itself
    would always pass a change threshold, so such versions are skipped.
    """
    for version in reversed(versions(serving_dir)):
        if candidate_sha256 is None or version.digest() != candidate_sha256:
            return version
    return None


def next_version(serving_dir: str) -> int:
    """The number a new version gets: one more than any existing number."""
    numbers = _numbered(serving_dir)
    return numbers[-1] + 1 if numbers else 1


@contextlib.contextmanager
def push_lock(serving_dir: str, on_wait=None):
    """Hold the push lock of a serving directory (created if missing): an exclusive
    `flock` on the directory itself, not on the pipeline root, since runs on different
    roots share a serving directory; no file is added to it. The operating system drops
    the lock when its process dies, so a killed push never leaves it held.

    Args:
        serving_dir: the serving directory.
        on_wait: called (without arguments) when another push holds the lock; then this
            waits for it.

    Raises:
        UsageError: the directory cannot be created, opened or locked (a file system
            without `flock`).
    """
    _make_dir(serving_dir)
    try:
        handle = os.open(serving_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as err:
        raise UsageError(f"serving directory {serving_dir}: cannot open "
                         f"({err.strerror or err.__class__.__name__})") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as err:
            raise UsageError(f"serving directory {serving_dir}: cannot lock it for a push "
                             f"({err.strerror or err.__class__.__name__})") from None
        yield
    finally:
        os.close(handle)  # releases the lock


def _make_dir(serving_dir: str) -> None:
    try:
        os.makedirs(serving_dir, exist_ok=True)
    except FileExistsError:  # a file of that name (`exist_ok` covers a directory)
        raise UsageError(f"serving directory {serving_dir}: not a directory") from None
    except OSError as err:
        raise UsageError(f"serving directory {serving_dir}: cannot create "
                         f"({err.strerror or err.__class__.__name__})") from None


def write_card(version_dir: str, card: dict) -> None:
    """Replace the model card of a published version in one rename (readers see the old
    card or the new one). The temporary file is written beside the version, not inside
    it, so a kill leaves no stray file in the SavedModel (`remove_leftovers` clears it)."""
    tmp = os.path.join(os.path.dirname(version_dir),
                       f".{os.path.basename(version_dir)}.card-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(card, f, indent=2, sort_keys=True)
        os.replace(tmp, os.path.join(version_dir, MODEL_CARD))
    except BaseException:
        _remove(tmp)
        raise


def version_below(directory: str) -> str | None:
    """A serving version (an integer-named directory holding `saved_model.pb`) that is
    `directory` or lies below it, or None: what emptying `directory` would take out of
    service. Symbolic links are looked through, not walked into."""
    if _is_version(directory):
        return directory
    for parent, names, _ in os.walk(directory):
        for name in names:
            if _is_version(os.path.join(parent, name)):
                return os.path.join(parent, name)
    return None


def _is_version(path: str) -> bool:
    name = os.path.basename(os.path.normpath(path))
    return (name.isascii() and name.isdigit()
            and os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)))


def publish(saved_model: str, serving_dir: str, number: int, card: dict) -> str:
    """Copy a SavedModel and its card into `<serving_dir>/<number>`, visible only when whole.

    Returns:
        The version directory.

    Raises:
        VersionTaken: `<number>` appeared meanwhile (another push); nothing was written.
        UsageError: `serving_dir` cannot be created (a file is in the way, no permission).
    """
    _make_dir(serving_dir)
    final = os.path.join(serving_dir, str(number))
    tmp = os.path.join(serving_dir, f".{number}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        shutil.copytree(saved_model, tmp)
        write_json_atomic(os.path.join(tmp, MODEL_CARD), card)
        _rename_new(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _rename_new(source: str, target: str) -> None:
    """Rename a directory to a name nobody holds yet.

    Raises:
        VersionTaken: `target` exists (POSIX rename would silently replace an empty one).
    """
    if os.path.lexists(target):
        raise VersionTaken(errno.EEXIST, "version exists", target)
    try:
        os.rename(source, target)
    except OSError as err:
        if err.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
            raise VersionTaken(err.errno, "version exists", target) from None
        raise


def remove_leftovers(serving_dir: str, older_than: float = LEFTOVER_SECONDS) -> list[str]:
    """Delete the staging copies (`.N.tmp-*`), half-deleted versions (`.N.deleting-*`,
    a directory or a symbolic link) and card rewrites (`.N.card-*`) of pushes and prunes
    that were killed outright, once they are `older_than` seconds old: younger ones may
    belong to a push at work right now (one that does not take the lock). A link is
    removed, never what it points to.

    Returns:
        The names removed.
    """
    removed = []
    now = time.time()
    for name in sorted(os.listdir(serving_dir)):
        path = os.path.join(serving_dir, name)
        if not _LEFTOVER.fullmatch(name):
            continue
        try:
            if now - os.lstat(path).st_mtime < older_than:
                continue
        except FileNotFoundError:  # its push finished or another push removed it
            continue
        _remove(path)
        removed.append(name)
    return removed


def prune(serving_dir: str, keep: int) -> list[int]:
    """Delete all but the newest `keep` complete versions.

    Returns:
        The numbers removed.
    """
    removed = []
    for version in versions(serving_dir)[:-keep]:
        # Rename first so a reader never sees a half-deleted version as complete.
        doomed = os.path.join(serving_dir, f".{version.number}.deleting-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(version.path, doomed)
        except FileNotFoundError:  # a concurrent push pruned it first
            continue
        _remove(doomed)
        removed.append(version.number)
    return removed


def _remove(path: str) -> None:
    """Remove a directory tree, a file or a symbolic link (never what the link points to:
    a version linked in from elsewhere leaves service, its files stay where they are)."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
