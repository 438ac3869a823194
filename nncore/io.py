"""Model files: the bytes of a saved model, written atomically and read back
without pickle. The format (an uncompressed .npz of a JSON config and arrays)
and its checks are nncore.schema's; Sequential.save and nncore.load use
write and read here:

    write(path, config, arrays)    config: a JSON-ready dict; arrays: {name: ndarray}
    read(path) -> (config, arrays) every name, shape and dtype checked against
                                   the config before an array's data is read

write(path, ...) writes exactly `path`: no ".npz" is appended to a name without
it (np.savez would append one), so read(path) reads back what write(path) wrote.
The write is atomic: the archive goes to a temporary file in the same folder,
is flushed to disk, then renamed onto `path`; on any error the temporary file
is removed and an existing file at `path` is left untouched. A new file gets
the usual permissions (0o666 less the umask); an overwritten one keeps its own.

read(path) uses np.load(allow_pickle=False) and never unpickles; it raises
ModelFileError, a ValueError, naming what is wrong, and OSError when the file
cannot be opened.
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import stat
import tempfile
import zipfile
from typing import IO, TYPE_CHECKING, Any, Callable, Iterator, Mapping

import numpy as np

from nncore.schema import ModelFileError, check_layout, check_names, parse

if TYPE_CHECKING:
    from nncore.datasets import PathLike

__all__ = ["ModelFileError", "read", "write"]

MAX_CONFIG_CHARS = 1 << 24        # a config is a few hundred characters per layer
_TMP_PREFIX = ".nncore-"          # .nncore-<pid>-<random>.npz while a save writes
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")    # a zip with members, an empty zip


def write(path: PathLike, config: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Write config (a JSON-ready dict) and arrays ({name: ndarray}) to the .npz
    file `path` (used as given: no suffix added), atomically.

    Raises OSError (FileNotFoundError for a missing folder, PermissionError for a
    read-only one, ...) naming `path` when the file cannot be written; an
    existing file at `path` is then left as it was.
    """
    text = json.dumps(config, allow_nan=False)
    path = _path(path)
    _check_target(path)
    folder = os.path.dirname(os.path.abspath(path))
    mode = _new_file_mode(path)
    _remove_stale_temporaries(folder)
    fd: int | None
    try:
        fd, tmp = tempfile.mkstemp(suffix=".npz", prefix=f"{_TMP_PREFIX}{os.getpid()}-",
                                   dir=folder)
    except OSError as e:
        raise OSError(e.errno, f"cannot save the model into the folder {folder!r}: "
                               f"{e.strerror}", path) from e
    try:
        with os.fdopen(fd, "wb") as f:
            fd = None
            # No allow_pickle=: NumPy < 2.2 would store it as an array; plain
            # float and unicode arrays are never pickled anyway. (The type checker
            # fears an array named allow_pickle; a model's are layers.* and optimizer.*.)
            np.savez(f, config=np.array(text), **arrays)      # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def _check_target(path: str) -> None:
    """A path save may replace: not empty, not a folder, not a read-only file (as
    np.save and torch.save refuse one: replacing it by rename would succeed)."""
    if not path:
        raise ValueError("path is empty: name the file to save the model to")
    if os.path.isdir(path) or path.endswith((os.sep, "/")):
        raise IsADirectoryError(errno.EISDIR, "path is a folder, not a file name", path)
    if os.path.lexists(path) and not os.access(path, os.W_OK, follow_symlinks=True):
        raise PermissionError(errno.EACCES, "the file is read-only: nncore does not "
                                            "replace it", path)


def _remove_stale_temporaries(folder: str) -> None:
    """Remove temporary files of ours that a killed save left in folder: named
    .nncore-<pid>-*.npz by a process that no longer runs."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not (name.startswith(_TMP_PREFIX) and name.endswith(".npz")):
            continue
        pid = name[len(_TMP_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(folder, name))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):
        return True                  # someone else's process, or no way to tell: keep it
    return True


def read(path: PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(config, arrays) of the model file at `path`, as write wrote them; the
    config parsed and every array's name, shape and dtype checked against it.

    Raises ModelFileError (a ValueError) naming what is wrong with a file that
    is not a loadable nncore model, and OSError when it cannot be opened.
    """
    path = _path(path)
    info = os.stat(path)
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, "a folder, not a model file", path)
    if not stat.S_ISREG(info.st_mode):               # a FIFO or a device would block
        raise ModelFileError(f"{path}: not a regular file (a model file is an .npz file)")
    with open(path, "rb") as f:
        try:
            return _read(f)
        except ModelFileError as e:
            e.args = (f"{path}: {e.args[0]}",)
            raise


def _path(path: object) -> str:
    if isinstance(path, (str, bytes, os.PathLike)):
        return os.fsdecode(os.fspath(path))
    raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")


@contextlib.contextmanager
def _reading(what: str) -> Iterator[None]:
    """Turn any error raised while reading a damaged archive into a ModelFileError."""
    try:
        yield
    except (ModelFileError, MemoryError):
        raise
    except Exception as e:
        raise ModelFileError(f"cannot read {what}: the file is damaged or not an nncore "
                             f"model ({type(e).__name__}: {e})"[:400]) from e


def _header(npz: Any, member: str) -> tuple[tuple[int, ...], np.dtype, Callable[[], None]]:
    """(shape, dtype, check_size) from the .npy header of a zip member, without
    reading its data; check_size() raises unless the member holds exactly the
    data the header announces, so that nothing is allocated for data that is not there."""
    with npz.zip.open(member) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ModelFileError(f"{member} has .npy format version {version}, "
                                 f"expected 1.0 or 2.0")
        n_bytes = npz.zip.getinfo(member).file_size - f.tell()

    def check_size() -> None:
        expected = math.prod(shape) * dtype.itemsize
        if n_bytes != expected:
            raise ModelFileError(f"{member[:-4]} holds {n_bytes} bytes of data but its "
                                 f"header announces {expected}: the file is damaged")
    return shape, dtype, check_size


def _check_stored(infos: list[zipfile.ZipInfo], file_size: int) -> None:
    """Every member stored, not compressed (np.savez stores them), and the sizes the
    archive declares fit in the file: reading never allocates more than the file holds
    (a compressed member could expand a small file into gigabytes)."""
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED:
            raise ModelFileError(f"member {info.filename!r} is compressed (method "
                                 f"{info.compress_type}): nncore model files store their "
                                 f"arrays uncompressed"[:300])
        if info.file_size != info.compress_size or info.file_size > file_size:
            raise ModelFileError(f"member {info.filename!r} declares {info.file_size} bytes, "
                                 f"more than the file's {file_size}: the file is damaged"[:300])
    if sum(info.file_size for info in infos) > file_size:
        raise ModelFileError(f"the members declare more bytes than the file's {file_size}: "
                             f"the file is damaged")


def _read(f: IO[bytes]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    magic = f.read(4)
    f.seek(0)
    if magic not in _ZIP_MAGIC:
        raise ModelFileError("not an nncore model file: "
                             + ("the file is empty" if not magic else "not an .npz archive"))
    with _reading("the .npz archive"):
        npz = np.load(f, allow_pickle=False)
    with npz:
        with _reading("the .npz archive"):
            members = npz.zip.namelist()
            infos = npz.zip.infolist()
        _check_stored(infos, os.fstat(f.fileno()).st_size)
        names = [m[:-4] for m in members if m.endswith(".npy")]
        if len(names) < len(members):
            raise ModelFileError(f"the archive holds {len(members) - len(names)} member(s) "
                                 f"that are not .npy arrays")
        if len(set(names)) < len(names):
            raise ModelFileError("the archive holds an array name twice")
        if "config" not in names:
            raise ModelFileError("no 'config' array: not an nncore model file")

        with _reading("config"):
            shape, dtype, check_size = _header(npz, "config.npy")
            if dtype.kind != "U" or shape != () or dtype.itemsize > 4 * MAX_CONFIG_CHARS:
                raise ModelFileError(f"config must be a 0-d unicode array (a JSON string), got "
                                     f"shape {shape} dtype {dtype}")
            check_size()
            text = str(npz["config"][()])
        config = _json(text)

        spec = parse(config)
        arrays = {}
        shapes = check_names(spec, [n for n in names if n != "config"])
        for name in shapes:
            if name in names:
                with _reading(name):
                    shape, dtype, check_size = _header(npz, name + ".npy")
                    check_layout(name, shape, dtype, shapes[name], spec["dtype"])
                    check_size()
                    arrays[name] = npz[name]
    return config, arrays


def _json(text: str) -> Any:
    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a number JSON allows")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(set(keys)) < len(keys):
            raise ValueError(f"duplicate keys {sorted({k for k in keys if keys.count(k) > 1})}")
        return dict(pairs)

    try:
        return json.loads(text, parse_constant=no_constant, object_pairs_hook=no_duplicates)
    except (ValueError, RecursionError) as e:
        raise ModelFileError(f"config is not valid JSON: {e}"[:300]) from e


def _new_file_mode(path: str) -> int:
    """An overwritten file keeps its read/write/execute permissions (not setuid,
    setgid or sticky bits); a new one gets 0o666 less the umask, as open() would
    give it (mkstemp makes 0o600)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode) & 0o777
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)        # no way to read it without setting it
    os.umask(mask)
    return mask


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable, where the platform allows (not Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
