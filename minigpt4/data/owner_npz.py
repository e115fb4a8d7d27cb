"""Reading the dataset owners' ``.npz`` files without trusting their pickles.

AffectGPT's label files (``label.npz``, ``label-6way.npz``, ``label_4way.npz``) hold a dict in a
0-d object array, and object arrays are stored as pickles: ``np.load(allow_pickle=True)`` would
run whatever the file says. `load_npz` reads such arrays with an unpickler that only rebuilds
numpy arrays, dtypes and scalars (plus the dicts, lists, strings and numbers pickle encodes
without any import), as ``torch.load(weights_only=True)`` does for tensors; anything else is
refused with `OwnerFileError`. Plain (non-object) arrays are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from minigpt4.common.errors import UserError

# The only globals an object array of dicts / lists / strings / numbers needs to be rebuilt.
_ALLOWED_GLOBALS = {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {("numpy", "ndarray"), ("numpy", "dtype")}


class OwnerFileError(UserError):
    """An owners' data file that is missing, unreadable or holds something other than plain data."""


class _PlainDataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain data is read from label files")


def _read_member(archive: zipfile.ZipFile, member: str, path: Path) -> Any:
    with archive.open(member) as fh:
        version = npy_format.read_magic(fh)
        read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(fh)
        if not dtype.hasobject:
            return None  # read by np.load below, no pickle involved
        try:
            array = _PlainDataUnpickler(fh).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as err:
            raise OwnerFileError(f"{path}: array {member[:-4]!r} is not plain data ({err})") from None
    if not isinstance(array, np.ndarray) or array.shape != shape:
        raise OwnerFileError(f"{path}: array {member[:-4]!r} does not match its header")
    return array


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (object arrays through the restricted unpickler)."""
    path = Path(path)
    if not path.is_file():
        raise OwnerFileError(f"file not found: {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if m.endswith(".npy")]
            arrays = {m[:-4]: _read_member(archive, m, path) for m in members}
        with np.load(path, allow_pickle=False) as plain:
            for key, value in arrays.items():
                if value is None:
                    arrays[key] = plain[key]
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        if isinstance(err, OwnerFileError):
            raise
        raise OwnerFileError(f"{path}: not a readable .npz ({err})") from None
    return arrays


def load_npz_item(path: str | Path, key: str) -> Any:
    """``np.load(path, allow_pickle=True)[key].tolist()`` of the owners, read safely."""
    arrays = load_npz(path)
    if key not in arrays:
        raise OwnerFileError(f"{path}: no array {key!r} (found {sorted(arrays)})")
    return arrays[key].tolist()
