"""The output directory's safety: one run at a time, never overwrite by accident, delete only what prep wrote,
resume an interrupted run without mixing in shards of another plan.

A run takes an exclusive lock (`.prep-lock`, fcntl.flock) for its whole length. It records its plan in
`.prep-manifest/run.json` before writing anything, and each shard task records its finished shard there
(one small file per shard, written just before the shard gets its final name, so it works on object stores,
which cannot append). summary.json is written last and the manifest removed. So everything under a final
name is listed either in summary.json or in the manifest: that is exactly what `overwrite=true` may delete.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import posixpath
import stat
from collections.abc import Iterable

from prep.core import nofollow, storage
from prep.core.errors import ConfigError, PrepError, WriteError
from prep.core.values import ShardPlan, ShardResult
from prep.runfiles.names import BOOKKEEPING, HYDRA, LABELS_CSV, LOCK, MANIFEST, REPORT, RESERVED, SUMMARY

log = logging.getLogger(__name__)
_HEADER = "run.json"
_SIDE_FILES = (".partial", ".idx", ".idx.partial")  # what a shard task may leave beside a shard path


def plan_digest(plan: ShardPlan, class_names: list[str] | None) -> str:
    """Everything about a shard's records that the plan decides: names, order, labels, class texts, place."""
    digest = hashlib.sha256(f"{plan.path}\n{plan.split}\n{plan.index}\n{plan.count}\n".encode())
    for item in plan.items:
        text = class_names[item.label] if class_names else ""
        # surrogateescape: names that are not UTF-8 (any bytes are a legal Linux file name) digest as their bytes
        digest.update(f"{item.name}\t{item.ref}\t{item.label}\t{text}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def stamp_digest(stamps: Iterable[object]) -> str:
    """The state of a shard's source files (size, modification time) when they were read."""
    digest = hashlib.sha256()
    for stamp in stamps:
        digest.update(f"{stamp}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def file_sha256(path: str, root: str) -> str:
    """The sha256 of a file prep wrote in root, read without following a link."""
    digest = hashlib.sha256()
    with (storage.open_read(path) if storage.is_url(path) else nofollow.open_read(storage.local(root), storage.local(path))) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read(root: str, path: str) -> bytes:
    """One of prep's own files in root, read without following a link (a link there is another's file)."""
    if storage.is_url(path):
        return storage.read_bytes(path)
    with nofollow.open_read(storage.local(root), storage.local(path)) as f:
        if os.fstat(f.fileno()).st_size > storage.MAX_READ_BYTES:
            raise OSError(errno.EFBIG, "too large", path)
        return f.read()


def _write(path: str, data: bytes, root: str) -> None:
    try:
        storage.write_bytes(path, data, root=root)
    except OSError as err:
        raise WriteError(f"{path}: cannot write: {err.strerror or err}") from None


def entry_name(path: str) -> str:
    return hashlib.sha256(path.encode()).hexdigest()[:24] + ".json"


def record_shard(output_dir: str, plan: ShardPlan, class_names, stamps: str, result: ShardResult) -> None:
    """Called by the shard task just before the shard gets its final name: a published shard is always recorded."""
    extra = {rel: file_sha256(storage.join(output_dir, rel), output_dir) for rel in result.extra_files}  # e.g. the DALI index
    entry = {"plan": plan_digest(plan, class_names), "inputs": stamps, "result": result.as_dict(), "extra_sha256": extra}
    _write(storage.join(output_dir, MANIFEST, entry_name(plan.path)), json.dumps(entry, sort_keys=True).encode(), output_dir)


class Manifest:
    """The unfinished run's record: run.json (fingerprint and every path the run may write) and one file per shard."""

    def __init__(self, output_dir: str, fingerprint: str) -> None:
        self.output_dir = output_dir
        self.dir = storage.join(output_dir, MANIFEST)
        self.fingerprint = fingerprint

    def header(self) -> dict:
        try:
            header = json.loads(_read(self.output_dir, storage.join(self.dir, _HEADER)))
            return header if isinstance(header, dict) else {}
        except (OSError, ValueError):
            return {}

    def entries(self) -> dict[str, dict]:
        """Finished shards by path; a file cut short by a crash is left out (that shard is simply redone)."""
        entries: dict[str, dict] = {}
        for name in storage.listdir(self.dir):
            if name == _HEADER or not name.endswith(".json"):
                continue
            try:
                entry = json.loads(_read(self.output_dir, storage.join(self.dir, name)))
                entries[entry["result"]["path"]] = entry
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return entries

    def start(self, shards: list[str], owned: list[str] | tuple[str, ...] = ()) -> None:
        """Record, before writing them, what the run may leave here: its planned shards (with their .partial
        and index files) and `owned`, whole files it is about to write or still has to delete."""
        try:
            storage.makedirs(self.dir, root=self.output_dir)
        except OSError as err:
            raise WriteError(f"{self.dir}: cannot create: {err.strerror or err}") from None
        header = {"fingerprint": self.fingerprint, "files": sorted(set(shards)), "owned": sorted(set(owned))}
        _write(storage.join(self.dir, _HEADER), json.dumps(header).encode(), self.output_dir)

    def is_prep(self) -> bool:
        """Whether the manifest's header is one prep wrote: a fingerprint, and lists of paths where it has them."""
        header = self.header()
        lists = [header.get(key, []) for key in ("files", "owned")]
        return isinstance(header.get("fingerprint"), str) and all(isinstance(x, list) and all(isinstance(p, str) for p in x) for x in lists)

    def recorded(self) -> set[str]:
        """Every path this manifest says the run may have written (shards with their side files, owned files)."""
        header = self.header()
        shards = {p for p in header.get("files") or [] if isinstance(p, str)} if isinstance(header.get("files"), list) else set()
        owned = {p for p in header.get("owned") or [] if isinstance(p, str)} if isinstance(header.get("owned"), list) else set()
        for path, entry in self.entries().items():
            shards.add(path)
            extra = entry.get("result", {}).get("extra_files") if isinstance(entry.get("result"), dict) else None
            if isinstance(extra, list):
                owned.update(p for p in extra if isinstance(p, str))
        return owned | {path + side for path in shards for side in ("", *_SIDE_FILES)}

    def forget(self, path: str) -> None:
        storage.remove(storage.join(self.dir, entry_name(path)), root=self.output_dir)

    def remove(self) -> None:
        storage.remove_tree(self.dir)


# ---------------------------------------------------------------------------------------------- ownership


def _summary_files(output_dir: str) -> set[str] | None:
    """What a finished prep run's summary.json says it wrote, or None if there is no prep summary."""
    from prep.runfiles import summary as summaries

    path = storage.join(output_dir, SUMMARY)
    try:
        summary = summaries.validate(json.loads(_read(output_dir, path)), path)  # prep's summary, not one with its name
    except (OSError, ValueError, RecursionError, PrepError):
        return None
    files = {SUMMARY, LABELS_CSV, REPORT}
    meta = summary.get("metadata_files")
    if isinstance(meta, list):
        files.update(m["path"] for m in meta if isinstance(m, dict) and isinstance(m.get("path"), str))
    for shard in summary["shards"]:
        if isinstance(shard, dict) and isinstance(shard.get("path"), str):
            files.add(shard["path"])
            extra = shard.get("extra_files")
            if isinstance(extra, list):
                files.update(p for p in extra if isinstance(p, str))
            else:  # summaries written before shards listed their extra files: DALI index beside the shard
                files.add(shard["path"] + ".idx")
    return files


def owned_files(output_dir: str) -> set[str]:
    """Every relative path an earlier prep run here recorded as its own: exactly the files its summary.json
    lists, and what the manifest of an unfinished run planned (its shards may be half-written)."""
    files = set(_summary_files(output_dir) or ()) | Manifest(output_dir, "").recorded()
    return {posixpath.normpath(p) for p in files if _inside(p)}


def _inside(rel: str) -> bool:
    """A relative path that stays inside the folder (records can be edited by hand: never trust them further)."""
    norm = posixpath.normpath(rel) if rel else ""
    return bool(norm) and not norm.startswith(("/", "../")) and norm not in (".", "..") and "\\" not in norm and "\0" not in norm


def _all_files(output_dir: str, bookkeeping: frozenset = BOOKKEEPING) -> list[str]:
    """Every file below output_dir, relative, except the run's own bookkeeping (lock, log, .hydra, manifest):
    `bookkeeping` names those of the top level that are prep's here (only what the folder's mark vouches for)."""
    if storage.is_url(output_dir):
        found = storage.find(output_dir) if storage.isdir(output_dir) else []
    else:
        root = storage.local(output_dir)
        found = []
        for folder, dirs, files in os.walk(root):
            rel = os.path.relpath(folder, root)
            if rel == ".":
                # prep's own bookkeeping, but only the real thing: a symlink named prep.log or .hydra would
                # make prep write outside the folder, so it counts as something in the way.
                dirs[:] = [d for d in dirs if d not in (bookkeeping & {HYDRA}) | {MANIFEST} or os.path.islink(os.path.join(folder, d))]
                files = [f for f in files if f not in bookkeeping or not _plain_file(os.path.join(folder, f))]
            found += [posixpath.normpath(posixpath.join(rel.replace(os.sep, "/"), f)) for f in files]
            # a symlinked folder is listed as an entry, never followed
            found += [posixpath.normpath(posixpath.join(rel.replace(os.sep, "/"), d)) for d in dirs if os.path.islink(os.path.join(folder, d))]
    if storage.is_url(output_dir):
        found = [f for f in found if f.split("/", 1)[0] not in (HYDRA, MANIFEST) and f not in bookkeeping]
    return sorted(found)


def _plain_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _remove_owned(output_dir: str, files: set[str], fingerprint: str) -> None:
    """Delete an earlier run's files, then the folders that only they filled.

    First the manifest is rewritten to list them all, and summary.json goes first: a run interrupted while
    deleting leaves an unfinished run that overwrite=true or resume=true can still clear, never a folder
    that looks finished with shards missing.
    """
    manifest = Manifest(output_dir, fingerprint)
    manifest.start([], owned=sorted(files))
    for name in storage.listdir(manifest.dir):
        if name != _HEADER:
            storage.remove(storage.join(manifest.dir, name), root=output_dir)
    folders = set()
    for rel in sorted(files, key=lambda f: (f != SUMMARY, f)):
        storage.remove(storage.join(output_dir, rel), root=output_dir)
        parent = posixpath.dirname(rel)
        while parent:
            folders.add(parent)
            parent = posixpath.dirname(parent)
    if not storage.is_url(output_dir):
        for folder in sorted(folders, key=lambda f: -f.count("/")):
            # only an empty real folder: one that is not empty holds something else, which stays
            nofollow.remove_folder(storage.local(output_dir), os.path.join(storage.local(output_dir), folder))


def _shown(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")


# ---------------------------------------------------------------------------------------------- the mark

# What makes a folder prep's, besides a finished run's summary.json or an unfinished run's manifest: prep writes
# this into its lock file when a run claims the folder (and when a stopped run leaves its log there). A
# plan.json, prep.log or .hydra/ in a folder without it is another program's, and prep leaves it alone.
MARK = b"prep: this folder holds the files of a prep run (see summary.json, or plan.json for a dry run)\n"


def mark(output_dir: str) -> None:
    """Mark a local folder as prep's (the lock file, made if missing, never through a link)."""
    if storage.is_url(output_dir):
        return
    fd = os.open(os.path.join(storage.local(output_dir), LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    try:
        _write_mark(fd)
    finally:
        os.close(fd)


def _state(fd: int) -> str:
    """"empty", "marked" or "foreign": a lock file is prep's only as a regular file of one name (a hard link to
    it would let prep write into another file) holding nothing or prep's mark."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        return "foreign"
    content = os.pread(fd, len(MARK) + 1, 0)
    return "empty" if not content else "marked" if content == MARK else "foreign"


def _lock_state(output_dir: str) -> str:
    """The local lock file's state (see _state), or "absent"."""
    try:
        fd = os.open(os.path.join(storage.local(output_dir), LOCK), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return "absent"
    except OSError:
        return "foreign"
    try:
        return _state(fd)
    finally:
        os.close(fd)


def _write_mark(fd: int) -> None:
    state = _state(fd)
    if state == "foreign":
        raise ConfigError(f"{LOCK}: not prep's lock file (other content, a hard link, or not a regular file); prep leaves it alone")
    if state == "empty":
        os.ftruncate(fd, 0)
        os.pwrite(fd, MARK, 0)


def is_prep_lock(output_dir: str) -> bool:
    """Whether the folder's lock file is prep's (empty or marked, one name, a regular file)."""
    return _lock_state(output_dir) in ("empty", "marked")


def is_marked(output_dir: str) -> bool:
    """Whether prep marked this folder as its own (a regular lock file holding the mark)."""
    if storage.is_url(output_dir):
        return True  # object stores have no lock file: there the names alone are what prep goes by
    return _lock_state(output_dir) == "marked"


# ---------------------------------------------------------------------------------------------- the lock


class RunLock:
    """An exclusive lock on output_dir for the whole run: two runs into one folder cannot both proceed.

    Locally a `.prep-lock` file held with fcntl.flock (released by the kernel when the process ends, even
    when killed; the file stays, so no other run can race on its deletion). Object stores have no locks:
    see the README for what is and is not guaranteed there.
    """

    def __init__(self, output_dir: str) -> None:
        self.output_dir = output_dir
        self._fd: int | None = None

    def acquire(self) -> None:
        if storage.is_url(self.output_dir):
            return
        import fcntl

        check_not_nested(self.output_dir)  # before the folder is created
        path = os.path.join(storage.local(self.output_dir), LOCK)
        try:
            os.makedirs(storage.local(self.output_dir), exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as err:
            raise WriteError(f"output_dir={self.output_dir}: cannot write there: {err.strerror or err}") from None
        if _state(fd) == "foreign":  # checked again on the file itself, now open
            os.close(fd)
            raise ConfigError(
                f"output_dir={self.output_dir} is not empty ({LOCK}): it is not prep's lock file (other content, a hard link, "
                "or not a regular file); move it away or choose another output_dir"
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ConfigError(
                    f"output_dir={self.output_dir} is in use by another prep run: wait for it to finish, or choose another output_dir"
                ) from None
            raise WriteError(f"{path}: cannot lock: {err.strerror or err}") from None
        self._fd = fd  # nothing is written to it yet: a refused run changes nothing in the folder, not even this

    def mark(self) -> None:
        """The run has claimed the folder: mark it as prep's (see MARK)."""
        if self._fd is not None:
            _write_mark(self._fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def check_not_nested(output_dir: str) -> None:
    """output_dir may not lie inside another prep run's output folder (finished, unfinished or being written):
    its files would be strays there, and that run's overwrite could never clear them."""
    if storage.is_url(output_dir):
        return
    real = os.path.realpath(storage.local(output_dir))
    parent = os.path.dirname(real)
    while parent and parent != os.path.dirname(parent):
        if any(os.path.lexists(os.path.join(parent, name)) for name in (LOCK, MANIFEST)):
            raise ConfigError(f"output_dir={output_dir} is inside {parent}, the output folder of another prep run: choose a folder outside it")
        parent = os.path.dirname(parent)


# ---------------------------------------------------------------------------------------------- preparing


def check_not_inputs(output_dir: str, inputs: Iterable[str | None]) -> None:
    """output_dir must not be, or contain, anything the run reads: overwrite there could delete the inputs."""
    out = _real(output_dir)
    for path in inputs:
        if not path:
            continue
        real = _real(path)
        if real == out or real.startswith(out.rstrip("/") + "/"):
            raise ConfigError(
                f"output_dir={output_dir} is or contains the run's input {path}: write the output to another folder "
                "(e.g. hydra.run.dir=outputs/NAME or output_dir=...)"
            )


def _real(path: str) -> str:
    return path.rstrip("/") if storage.is_url(path) else os.path.realpath(storage.local(path))


def holds_run(output_dir: str) -> bool:
    """Whether output_dir holds a finished or unfinished run (its summary.json or manifest)."""
    return storage.isdir(output_dir) and any(storage.exists(storage.join(output_dir, name)) for name in (SUMMARY, MANIFEST))


def prepare(output_dir: str, *, overwrite: bool, resume: bool, fingerprint: str, check_only: bool = False) -> dict[str, dict]:
    """Make the (locked) output_dir ready; returns the finished shards a resumed run may keep (path -> entry).

    Refuses, changing nothing, when the folder holds a finished run, an unfinished one, or files no prep run
    recorded, unless overwrite=true (which deletes only what earlier prep runs recorded as theirs, and still
    refuses when anything else is there) or resume=true (an unfinished run with the same config).
    """
    if overwrite and resume:
        raise ConfigError("overwrite=true and resume=true: choose one (resume keeps finished shards, overwrite starts again)")
    manifest = Manifest(output_dir, fingerprint)
    _refuse_links(output_dir)
    names_all = storage.listdir(output_dir)
    names = [n for n in names_all if n not in BOOKKEEPING]
    finished = SUMMARY in names and _summary_files(output_dir) is not None
    unfinished = MANIFEST in names and manifest.is_prep()
    if MANIFEST in names and not unfinished:
        raise ConfigError(
            f"output_dir={output_dir} is not empty ({MANIFEST}): it holds no record prep wrote (no run.json of a prep run): "
            "another program's, or damaged; move it away or choose another output_dir"
        )
    if LOCK in names_all and _lock_state(output_dir) == "foreign":
        raise ConfigError(
            f"output_dir={output_dir} is not empty ({LOCK}): it is not prep's lock file (it has other content, another name "
            "(a hard link), or is not a regular file); move it away or choose another output_dir"
        )
    # plan.json, prep.log and .hydra/ are prep's only where prep marked the folder, or where a run is
    bookkeeping = BOOKKEEPING if (finished or unfinished or is_marked(output_dir)) else frozenset({LOCK})
    if finished and not overwrite:
        raise ConfigError(
            f"output_dir={output_dir} already holds a finished run ({SUMMARY}); pass overwrite=true to replace it, "
            "or choose another output_dir"
        )
    if unfinished and not (overwrite or resume):
        raise ConfigError(
            f"output_dir={output_dir} holds an unfinished run (no {SUMMARY}); pass resume=true to finish it, or overwrite=true to start again"
        )
    if resume and unfinished:
        header = manifest.header()
        if header.get("fingerprint") != fingerprint:
            raise ConfigError(
                f"resume=true: {manifest.dir} was written with another config (fingerprint {header.get('fingerprint')}); "
                "resume with the same config, or pass overwrite=true to start again"
            )
    owned = owned_files(output_dir) if (finished or unfinished) else set()
    foreign = [f for f in _all_files(output_dir, bookkeeping) if f not in owned]
    if foreign:
        if finished or unfinished or overwrite:
            hint = "files no prep run recorded as its own, which prep never deletes: move them away or choose another output_dir"
        else:
            hint = "choose an empty folder"
        theirs = sorted({f.split("/", 1)[0] for f in foreign} & BOOKKEEPING)
        if theirs:  # prep's own names, but not prep's files
            hint += f"; {', '.join(theirs)} {'is' if len(theirs) == 1 else 'are'} another program's (a folder prep wrote in holds its mark in {LOCK})"
        raise ConfigError(f"output_dir={output_dir} is not empty ({_shown(foreign)}): {hint}")
    if check_only:
        return {}
    if resume and unfinished:
        return manifest.entries()
    if overwrite and owned:
        present = [f for f in _all_files(output_dir, bookkeeping) if f in owned]
        log.info("overwrite: removing %d file(s) an earlier run wrote in %s", len(present), output_dir)
        _remove_owned(output_dir, set(present) | ({SUMMARY} if finished else set()), fingerprint)
    return {}


def _refuse_links(output_dir: str) -> None:
    """A link planted at a name prep keeps in the folder would lead its writes, reads or deletes elsewhere."""
    if storage.is_url(output_dir):
        return
    for name in sorted(RESERVED):
        if os.path.islink(os.path.join(storage.local(output_dir), name)):
            raise ConfigError(
                f"output_dir={output_dir} is not empty ({name}): it is a symbolic link where prep keeps its own file, and prep never "
                "writes, reads or deletes through one; remove it or choose another output_dir"
            )


def settle_resume(output_dir: str, manifest: Manifest, entries: dict[str, dict], keep: set[str], plans: list[ShardPlan]) -> None:
    """Before a resumed run writes: delete every recorded shard it does not keep, whatever plan it came from,
    and every half-written file of the old and new plans, so no shard of another plan stays under a final name.
    (prepare() has already refused a folder holding anything prep did not record, so all of these are prep's.)"""
    kept = keep | {f"{path}{side}" for path in keep for side in (".idx",)}
    for rel in sorted(p for p in manifest.recorded() | {plan.path + side for plan in plans for side in ("", *_SIDE_FILES)} if _inside(p)):
        if rel not in kept:
            storage.remove(storage.join(output_dir, rel), root=output_dir)
    for path in entries:
        if path not in keep:
            manifest.forget(path)


def reusable(output_dir: str, plan: ShardPlan, entry: dict | None, class_names, stamps: str | None) -> ShardResult | None:
    """The recorded result of a finished shard whose plan, inputs and bytes are unchanged, else None (write it again)."""
    if entry is None or entry.get("plan") != plan_digest(plan, class_names):
        return None
    if stamps is None or entry.get("inputs") != stamps:
        return None
    try:
        result = ShardResult.from_dict(entry["result"])
    except (KeyError, TypeError, ValueError):
        return None
    if result.path != plan.path:
        return None
    path = storage.join(output_dir, result.path)
    try:
        if file_sha256(path, output_dir) != result.sha256:
            return None
    except OSError:
        return None
    recorded = entry.get("extra_sha256")
    if not isinstance(recorded, dict) or set(recorded) != set(result.extra_files):
        return None
    for rel, sha in recorded.items():
        try:
            if file_sha256(storage.join(output_dir, rel), output_dir) != sha:
                return None
        except OSError:
            return None
    return result


def clean_unfinished(output_dir: str, plans: list[ShardPlan]) -> None:
    """After a failed or interrupted run: no partial shard is left behind (workers killed mid-shard leave them)."""
    if storage.is_url(output_dir):
        return
    for plan in plans:
        for side in (".partial", ".idx.partial"):
            storage.remove(storage.join(output_dir, plan.path + side), root=output_dir)
