"""Import TensorFlow, or fail once with what to install. No pyspark import here.

TensorFlow is the user's choice, as in petastorm and horovod: ``pip install "sparkdl_lite[cpu]"``,
``pip install "sparkdl_lite[gpu]"``, or any TensorFlow >= 2.16 already installed. So
``import sparkdl_lite`` works without it, and the first use that needs it lands here.
"""
from __future__ import annotations

import re
from types import ModuleType
from typing import Optional, Tuple

__all__ = ["MIN_TENSORFLOW", "import_tensorflow", "settle_imports"]

MIN_TENSORFLOW: Tuple[int, int] = (2, 16)

_INSTALL = ('Install it with pip install "sparkdl_lite[cpu]" (CPU) or pip install "sparkdl_lite[gpu]" '
            '(NVIDIA GPU on Linux), or install any TensorFlow >= 2.16 yourself.')

_checked: Optional[ModuleType] = None  # the module, once imported and version-checked
_settled = False  # settle_imports() ran in this process (a Spark task imported TF here)


def import_tensorflow(*, task: bool = False) -> ModuleType:
    """Return the ``tensorflow`` module, checked to be version 2.16 or newer.

    The first import leaves out the lines TF's C++ libraries print while they load (see
    :mod:`sparkdl_lite.core.quiet`; ``SPARKDL_LITE_VERBOSE=1`` keeps them).

    Parameters
    ----------
    task : bool
        ``True`` inside a Spark task: TF's C++ logging is also switched off in that Python worker
        unless its environment sets ``TF_CPP_MIN_LOG_LEVEL``, and the first such call in a
        process runs :func:`settle_imports` (the garbage collector then skips TF's own objects).

    Returns
    -------
    module
        ``tensorflow``.

    Raises
    ------
    ImportError
        TensorFlow is missing, broken or older than 2.16; the message says what to install.

    Examples
    --------
    >>> tf = import_tensorflow()  # doctest: +SKIP
    >>> tf.constant(2.0).numpy()  # doctest: +SKIP
    2.0

    .. versionadded:: 0.1.0
    """
    global _checked, _settled
    if _checked is None:
        _checked = _import_checked(task)
    if task and not _settled:  # once per process, on the first task-side use
        _settled = True
        settle_imports()
    return _checked


def _import_checked(task: bool) -> ModuleType:
    """``import tensorflow`` (quietly) and check its version; ImportError says what to install."""
    from sparkdl_lite.core import quiet

    try:
        tf = quiet.import_tensorflow(task=task)
    except ImportError as exc:
        if exc.name == "tensorflow":  # not installed, as opposed to installed but failing to load
            raise ImportError(f"sparkdl_lite needs TensorFlow >= 2.16, and it is not installed. {_INSTALL}",
                              name="tensorflow") from None
        raise ImportError(f"sparkdl_lite needs TensorFlow >= 2.16; it is installed but 'import tensorflow' failed: {exc}. "
                          f"{_INSTALL}", name="tensorflow") from exc
    version = getattr(tf, "__version__", None)
    if version is None:  # e.g. a leftover tensorflow/ folder from a half-uninstalled package
        raise ImportError(f"sparkdl_lite needs TensorFlow >= 2.16; 'import tensorflow' found {getattr(tf, '__path__', '?')} "
                          f"with no __version__ (an incomplete install). {_INSTALL}", name="tensorflow")
    match = re.match(r"(\d+)\.(\d+)", version)
    if match and (int(match.group(1)), int(match.group(2))) < MIN_TENSORFLOW:
        raise ImportError(f"sparkdl_lite needs TensorFlow >= 2.16; found {version}. {_INSTALL}", name="tensorflow")
    return tf


def settle_imports() -> int:
    """Move every object alive now into the garbage collector's permanent generation.

    PySpark's daemon runs a full ``gc.collect()`` after every task of a reused Python worker.
    With TensorFlow imported that walks some 400,000 long-lived objects (modules, op
    registrations, Keras' classes): about 0.2 s per task on one core, measured in the training
    jobs of the halving search (27 short tasks per rung) and in small scoring jobs. Called once
    per process, right after the task-side TensorFlow import, this collects what is garbage and
    freezes the rest (:func:`gc.freeze`), so the per-task collection walks only the objects the
    task itself made. Objects made later (models, graphs, arrays) are collected as usual.

    Returns
    -------
    int
        The number of frozen objects (:func:`gc.get_freeze_count`).

    .. versionadded:: 0.2.0
    """
    import gc

    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
