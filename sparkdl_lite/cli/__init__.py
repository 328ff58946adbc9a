"""The ``sparkdl-lite`` command: ``tune``, ``label`` and ``images`` (the benchmarks are scripts in ``benchmarks/``).

``sparkdl-lite tune`` tunes a :class:`~sparkdl_lite.classifier.TFClassifier` on an MNIST-style
data set, a Parquet path or URI, or a table with Spark's ``CrossValidator`` / ``TrainValidationSplit``
and writes a report;
``sparkdl-lite label`` applies a saved model to a folder of images; ``sparkdl-lite images``
writes test images as PNG files (for trying ``label``). Run ``sparkdl-lite <command> -h``.

On a built-in data set the features of ``tune`` are image structs (``images_from_numpy`` of the
28x28 uint8 images, 1 channel): the classifier scales them by 1/255 inside its graph, so the saved
model labels PNG files read by Spark's image source directly. Parquet and table data stay
DataFrames (``--features-col``, ``--label-col``): no row is collected to the driver, and the
classifier's ``trainingData`` (``--training-data``) decides how the rows reach the training tasks. Imports of pyspark, TensorFlow and matplotlib are
deferred so ``sparkdl-lite --version`` and ``-h`` are fast.
"""
from __future__ import annotations

import argparse
import difflib
import os
import shlex
import sys
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from sparkdl_lite import __version__
from sparkdl_lite.cli.space import Range, parse_range, sample_configs
from sparkdl_lite.core.training import ARCHITECTURES, HYPERPARAMS, hyperparam_kwargs  # the one table of the fixed hyperparameters
from sparkdl_lite.runner import engine
from sparkdl_lite.runner.task_data import DATA_PATHS  # trainingData's choices

__all__ = ["main", "build_parser", "parse_grid", "data_kind", "TUNABLE_PARAMS", "DEFAULT_GRID",
           "DEFAULT_VALIDATION_FRACTION", "DEFAULT_TEST_FRACTION", "BUILTIN_DATA"]

#: Validation used when neither ``--folds`` nor ``--validation-fraction`` is given: one
#: TrainValidationSplit with 20% of the training rows held out (K-fold costs K times the training).
DEFAULT_VALIDATION_FRACTION = 0.2
#: The grid of ``tune`` when ``--grid`` is not given: the reference experiment's learning rate x layer width.
DEFAULT_GRID = "learningRate=1e-4,1e-3,1e-2 hiddenLayers=64,256,1024"
#: Test rows of Parquet or table data when ``--test-data`` is not given: this fraction of the rows, a seeded random split.
DEFAULT_TEST_FRACTION = 0.2
#: The data sets ``--data`` names (read from their IDX files on the driver).
BUILTIN_DATA = ("fashion-mnist", "mnist")
#: How ``tune --data`` tells its forms apart (``data_kind``); also in ``tune --help``.
DATA_RULE = ("fashion-mnist | mnist | a directory of IDX files (*-ubyte[.gz]) | a Parquet file or directory: a value "
             "that is an existing path, contains '/', has a scheme (file://, hdfs://, s3a://, ...) or ends in .parquet "
             "| else a table name (spark.table, e.g. db.digits)")


class UsageError(ValueError):
    """A bad command line: printed without a traceback, exit status 2."""


# ============================================================================ grid parsing
def _float(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"--grid: {name} value {text!r} is not a number (e.g. {name}=1e-4,1e-3).") from None


def _int(name: str, text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value.is_integer():
        raise UsageError(f"--grid: {name} value {text!r} is not a whole number (e.g. {name}=64,128).")
    return int(value)


def _int_list(name: str, text: str) -> List[int]:
    if text.lower() in ("none", "[]", "0"):
        return []  # e.g. a cnn with no hidden dense layer
    parts = [p for p in text.replace(";", "x").replace("X", "x").split("x") if p != ""]
    if not parts:
        raise UsageError(f"--grid: {name} value {text!r} is empty; use e.g. {name}=256 or {name}=256x128.")
    return [_int(name, p) for p in parts]


def _choice(choices: Sequence[str]) -> Callable[[str, str], str]:
    def convert(name: str, text: str) -> str:
        if text.lower() not in choices:
            raise UsageError(f"--grid: {name} value {text!r} is not one of {list(choices)}.")
        return text.lower()
    return convert


def _tunable() -> Dict[str, Callable[[str, str], Any]]:
    parsers = {"float": _float, "int": _int, "int_list": _int_list}
    return {n: _choice(spec["choices"]) if spec["kind"] == "choice" else parsers[spec["kind"]]
            for n, spec in HYPERPARAMS.items()}


#: The TFClassifier params that ``--grid`` can tune, with the parser of one value.
TUNABLE_PARAMS: Dict[str, Callable[[str, str], Any]] = _tunable()


def _aliases() -> Dict[str, str]:
    """The other spellings of a tunable param: any case, train()'s keyword name (``learning_rate``), two short names."""
    aliases = {n.lower(): n for n in TUNABLE_PARAMS}
    defaults = {n: spec["default"] for n, spec in HYPERPARAMS.items()}
    aliases.update(zip(hyperparam_kwargs(defaults), HYPERPARAMS, strict=True))  # the Param -> train() mapping's names
    aliases.update({"lr": "learningRate", "hidden": "hiddenLayers"})
    return aliases


_ALIASES = _aliases()


def _layer_value(name: str, text: str) -> Any:
    """A layerParams value: int, float, true/false/none, else the string itself."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in low else number


def parse_grid(spec: Any) -> List[Tuple[str, Any]]:
    """Parse ``"learningRate=1e-4,1e-3 hiddenLayers=64,256x128"`` into ``[(param, values), ...]``.

    A value ``low:high`` or ``low:high:log`` is a range (``learningRate=1e-4:1e-2:log``,
    ``hiddenLayers=32:512:log`` for one layer of 32 to 512 units, ``hidden.units=32:512``): its
    ``values`` are a :class:`~sparkdl_lite.cli.space.Range`, from which ``--configs N`` draws.

    A name with a dot, ``<layer>.<config key>`` (``hidden.units=64,256``), is a layer param of a
    model given with ``--model``: its values are ints, floats, ``true``/``false`` or strings.

    Space-separated ``name=v1,v2,...`` items (a list of such strings is joined with spaces).
    Values are parsed per param type: floats (``learningRate``, ``dropout``), ints (``epochs``,
    ``batchSize``, ``seed``), choices (``architecture``, ``optimizer``) and layer lists
    (``hiddenLayers``, ``convFilters``), where ``x`` or ``;`` inside one value make a multi-layer
    list: ``hiddenLayers=256x128,64`` is the two values ``[256, 128]`` and ``[64]``.

    Raises
    ------
    ValueError
        An unknown param (the message lists the tunable ones), a malformed item, a value of the
        wrong type, a param given twice, or a malformed or out-of-bounds range.

    Examples
    --------
    >>> parse_grid("learningRate=1e-3,1e-2 hiddenLayers=256x128,64")
    [('learningRate', [0.001, 0.01]), ('hiddenLayers', [[256, 128], [64]])]

    .. versionadded:: 0.1.0
    """
    text = " ".join(spec) if isinstance(spec, (list, tuple)) else str(spec or "")
    out: List[Tuple[str, Any]] = []
    for item in text.split():
        if "=" not in item:
            raise UsageError(f"--grid: item {item!r} is not name=value1,value2,...; e.g. \"learningRate=1e-4,1e-3 hiddenLayers=64,256\".")
        raw_name, raw_values = item.split("=", 1)
        layer = "." in raw_name.strip(".")
        name = raw_name if layer else (TUNABLE_PARAMS.get(raw_name) and raw_name or _ALIASES.get(raw_name.lower()))
        if name is None:
            close = difflib.get_close_matches(raw_name, list(TUNABLE_PARAMS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"--grid: unknown param {raw_name!r}.{hint} Tunable params: {', '.join(TUNABLE_PARAMS)}, "
                             f"and a --model's layer params as <layer>.<config key> (e.g. hidden.units=64,256).")
        if any(n == name for n, _ in out):
            raise UsageError(f"--grid: param {name!r} is given twice; list all its values once, comma-separated.")
        texts = [v for v in raw_values.split(",") if v.strip() != ""]
        if not texts:
            raise UsageError(f"--grid: param {name!r} has no values; e.g. {name}=v1,v2.")
        if any(":" in v for v in texts):
            out.append((name, _range(name, texts, layer)))
            continue
        values = [(_layer_value if layer else TUNABLE_PARAMS[name])(name, v.strip()) for v in texts]
        out.append((name, values))
    return out


def _range(name: str, texts: List[str], layer: bool) -> Range:
    """The :class:`~sparkdl_lite.cli.space.Range` of ``name=low:high[:log]``, its ends checked against HYPERPARAMS."""
    from sparkdl_lite.core.training import hyperparam_problem

    if len(texts) != 1:
        raise UsageError(f"--grid: param {name!r} mixes a range with other values ({','.join(texts)}); give either "
                         f"a range low:high[:log] or a comma-separated list of values.")
    try:
        rng = parse_range(name, texts[0].strip(), "layer" if layer else HYPERPARAMS[name]["kind"])
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for end in () if layer else (rng.low, rng.high):
        value: Any = [int(end)] if rng.one_layer else (int(end) if rng.integer else end)
        problem = hyperparam_problem(name, value)
        if problem:
            raise UsageError(f"--grid: {name} range {texts[0]!r}: its end {problem}")
    return rng


# ============================================================================ Spark session
def _is_local(master: str) -> bool:
    return master.startswith("local")


def _session(master: str, app_name: str, remote: Optional[str] = None) -> Tuple[Any, bool]:
    """The running SparkSession (reused, never stopped by us) or a new one: classic for ``master``,
    Spark Connect for ``remote`` (``sc://host:port``, or ``local[N]`` for a local Connect server;
    ``SPARK_REMOTE`` is honoured as Spark honours it). Quiet unless ``--verbose``: see
    :mod:`sparkdl_lite.core.quiet`."""
    from pyspark.sql import SparkSession

    from sparkdl_lite.core import quiet
    from sparkdl_lite.core.tfimport import import_tensorflow

    import_tensorflow()  # the driver's, without TF's start-up lines, before any thread of ours or Spark's writes to stderr
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    remote = remote or os.environ.get("SPARK_REMOTE")
    running = SparkSession.getActiveSession()
    if running is not None:
        if engine.master(running) != master and master != "local[*]" and not remote:
            print(f"sparkdl-lite: using the running SparkSession ({engine.master(running)}), not --master {master}",
                  file=sys.stderr)
        return running, False
    if remote:
        if remote.startswith("local"):
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        spark = SparkSession.builder.remote(remote).appName(app_name).getOrCreate()
        return spark, True
    builder = (SparkSession.builder.master(master).appName(app_name)
               .config("spark.ui.showConsoleProgress", "false")  # ours is on stderr
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.python.worker.reuse", "true")
               .config("spark.executorEnv.PYSPARK_PYTHON", os.environ["PYSPARK_PYTHON"]))
    for key, value in quiet.spark_conf().items():  # the executors' Python workers as quiet as this driver
        builder = builder.config(key, value)
    if _is_local(master):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = (builder.config("spark.driver.host", "127.0.0.1")
                   .config("spark.driver.bindAddress", "127.0.0.1")
                   .config("spark.ui.enabled", "false"))
    spark = builder.getOrCreate()
    if not quiet.verbose():
        engine.set_log_level(spark, "ERROR")
    return spark, True


# ============================================================================ tune
def _load_keras(path: str) -> Any:
    """A ``.keras`` archive, loaded in Keras' safe mode (no Python code from the file)."""
    from sparkdl_lite.core.keras_model import from_archive

    if not path.endswith(".keras") or not os.path.isfile(path):
        raise UsageError(f"--model: {path!r} is not a .keras file (save your model with model.save('model.keras')).")
    with open(path, "rb") as f:
        return from_archive(f.read())


def _search_configs(args: argparse.Namespace, grid_items: List[Tuple[str, Any]]) -> Optional[List[Dict[str, Any]]]:
    """Check --search, --factor, --min-epochs and --configs; the random configurations (None: the whole grid)."""
    if args.search == "grid":
        for flag, value in (("--factor", args.factor), ("--min-epochs", args.min_epochs)):
            if value is not None:
                raise UsageError(f"{flag} applies to --search halving; add --search halving or drop {flag}.")
    else:
        if args.factor is not None and not args.factor >= 2:
            raise UsageError(f"--factor must be >= 2 (each rung keeps the best 1/factor of the configurations and "
                             f"trains them factor times longer); got {args.factor:g}.")
        if args.min_epochs is not None and args.min_epochs < 1:
            raise UsageError(f"--min-epochs must be >= 1; got {args.min_epochs}.")
        if args.min_epochs is not None and args.min_epochs > args.epochs:
            raise UsageError(f"--min-epochs ({args.min_epochs}) must not exceed --epochs ({args.epochs}), the epochs of "
                             f"the last rung and of the refit.")
        if any(name == "epochs" for name, _ in grid_items):
            raise UsageError("--search halving allocates the epochs itself (from --min-epochs up to --epochs); remove "
                             "epochs from --grid.")
    ranges = [(name, values) for name, values in grid_items if isinstance(values, Range)]
    if args.configs is None:
        if ranges:
            name, values = ranges[0]
            raise UsageError(f"--grid: {name}={values} is a range; a range needs --configs N (N random configurations "
                             f"drawn from the ranges and value lists), or list its values: {name}=v1,v2,...")
        return None
    configs = sample_configs(grid_items, args.configs, seed=args.seed)  # it checks --configs >= 1
    if len(configs) < args.configs:
        print(f"sparkdl-lite tune: --configs {args.configs} is more than the grid's {len(configs)} configurations; "
              f"trying all of them.", file=sys.stderr)
    return configs


def _tune_flags(args: argparse.Namespace) -> Tuple[List[Tuple[str, Any]], Optional[float], Optional[List[Dict[str, Any]]]]:
    """Check the flags of ``tune`` before Spark and TF start: the grid items, the validation fraction, the configurations."""
    grid_items = parse_grid(args.grid)
    if not grid_items:
        raise UsageError(f"--grid is empty; give e.g. --grid \"{DEFAULT_GRID}\".")
    if args.folds is not None and args.validation_fraction is not None:
        raise UsageError("give --folds K (CrossValidator) or --validation-fraction F (TrainValidationSplit), not both.")
    if args.folds is not None and args.folds < 2:
        raise UsageError(f"--folds must be >= 2; got {args.folds}.")
    fraction = args.validation_fraction
    if args.folds is None and fraction is None:
        fraction = DEFAULT_VALIDATION_FRACTION
    if fraction is not None and not 0.0 < fraction < 1.0:
        raise UsageError(f"--validation-fraction must be in (0, 1); got {fraction}.")
    if args.sample is not None and args.sample < 10:
        raise UsageError(f"--sample must be >= 10; got {args.sample}.")
    return grid_items, fraction, _search_configs(args, grid_items)


# ============================================================================ tune: the data
def data_kind(value: str) -> str:
    """How ``tune --data`` reads ``value``: ``"builtin"``, ``"idx"``, ``"parquet"`` or ``"table"``.

    A built-in name (any case, ``_`` for ``-``) unless a path of that name exists; an existing
    directory holding IDX files (``*-ubyte``, ``*-ubyte.gz``); Parquet for any other existing path,
    a value containing ``/``, a URI (``scheme://``) or a name ending in ``.parquet``; else a table
    name for ``spark.table``.

    Examples
    --------
    >>> data_kind("Fashion_MNIST"), data_kind("s3a://bucket/digits"), data_kind("db.digits")
    ('builtin', 'parquet', 'table')

    .. versionadded:: 0.3.0
    """
    text = os.fspath(value)
    if text.strip().lower().replace("_", "-") in BUILTIN_DATA and not os.path.exists(text):
        return "builtin"
    if os.path.isdir(text) and any(n.removesuffix(".gz").endswith("-ubyte") for n in os.listdir(text)):
        return "idx"
    if os.path.exists(text) or "/" in text or os.sep in text or "://" in text or text.lower().rstrip("/").endswith(".parquet"):
        return "parquet"
    return "table"


class _DataFlags(NamedTuple):
    """``tune``'s data flags, checked before Spark starts."""

    kind: str  # of --data: builtin | idx | parquet | table
    test_kind: Optional[str]  # of --test-data (None: a split of --data, or a built-in test split)
    test_fraction: Optional[float]  # None with --test-data or built-in data
    features_col: str
    label_col: str


def _data_flags(args: argparse.Namespace) -> _DataFlags:
    """Check --data, --test-data, --test-fraction and the column flags against each other."""
    kind = data_kind(args.data)
    if kind in ("builtin", "idx"):
        given = [flag for flag, value in (("--features-col", args.features_col), ("--label-col", args.label_col),
                                          ("--test-data", args.test_data), ("--test-fraction", args.test_fraction))
                 if value is not None]
        if given:
            what = "a built-in data set" if kind == "builtin" else "a directory of IDX files"
            raise UsageError(f"{given[0]} applies to Parquet or table data; --data {args.data!r} is {what}, with its "
                             f"own columns and test split. Give --data a Parquet path or a table name, or drop {given[0]}.")
        return _DataFlags(kind, None, None, "image", "label")
    test_kind = None if args.test_data is None else data_kind(args.test_data)
    if test_kind in ("builtin", "idx"):
        raise UsageError(f"--test-data must be a Parquet path or a table name; got {args.test_data!r}, a "
                         f"{'built-in data set' if test_kind == 'builtin' else 'directory of IDX files'}.")
    fraction = args.test_fraction
    if fraction is None and test_kind is None:
        fraction = DEFAULT_TEST_FRACTION
    if fraction is not None and not 0.0 < fraction < 1.0:
        raise UsageError(f"--test-fraction must be in (0, 1); got {fraction}.")
    for flag, value, k in (("--data", args.data, kind), ("--test-data", args.test_data, test_kind)):
        if k == "parquet" and "://" not in value and not os.path.exists(value):  # a URI is checked by Spark
            raise FileNotFoundError(f"{flag} {value!r}: no such file or directory (a value containing '/' or ending "
                                    f"in .parquet is read as a Parquet path).")
    return _DataFlags(kind, test_kind, fraction, args.features_col or "features", args.label_col or "label")


def _input_shape(text: Optional[str], args: argparse.Namespace) -> Optional[List[int]]:
    """``--input-shape 8x8x1`` as [8, 8, 1]."""
    if text is None:
        return None
    if args.model:
        raise UsageError("--input-shape sizes the built-in architectures; a --model has its own input. Drop --input-shape.")
    parts = text.replace(",", "x").replace("X", "x").split("x")
    if not all(p.strip().isdigit() and int(p) >= 1 for p in parts):
        raise UsageError(f"--input-shape must be sizes >= 1 joined by x, e.g. 8x8x1 (height x width x channels); got {text!r}.")
    return [int(p) for p in parts]


def _frames(spark: Any, args: argparse.Namespace, flags: _DataFlags, dataset: Any) -> Tuple[Any, Any, Any]:
    """The train and test DataFrames and their TuneData: a built-in ``dataset`` made into image structs, else read by Spark."""
    from sparkdl_lite.reports.experiments import numpy_frames, read_frames

    if dataset is not None:
        return numpy_frames(spark, dataset)
    return read_frames(spark, args.data, flags.kind, features_col=flags.features_col, label_col=flags.label_col,
                       test_source=args.test_data, test_kind=flags.test_kind or "parquet",
                       test_fraction=flags.test_fraction or DEFAULT_TEST_FRACTION, sample=args.sample, seed=args.seed)


def _print_result(result: Dict[str, Any]) -> None:
    """The run's summary lines on stdout: best params, test accuracy, time, rungs, where the report is."""
    from sparkdl_lite.reports import tuning as tn

    test, timing, top, best_params = result["test"], result["timing"], result["top"], result["best_params"]
    default_acc, best_acc = test["default"]["test_accuracy"], test["best"]["test_accuracy"]
    err_d, err_b = test["default"]["test_error"], test["best"]["test_error"]
    total_seconds, tuning_seconds, sequential = timing["total_seconds"], timing["tuning_seconds"], timing["sequential_seconds"]
    red = test["relative_error_reduction"]
    print(f"best: {', '.join(f'{k}={v}' for k, v in best_params.items())} "
          f"(validation accuracy {top.get('mean'):.4f})")
    print(f"test accuracy: default {default_acc:.4f} -> tuned {best_acc:.4f}; test error {err_d:.4f} -> {err_b:.4f}"
          + (f" ({red:.1%} relative reduction)" if red is not None else ""))
    print(f"time: total {tn.format_seconds(total_seconds)}, tuning fit {tn.format_seconds(tuning_seconds)}, "
          f"sequential estimate {tn.format_seconds(sequential)}"
          + (f", speedup {timing['speedup']:.2f}x" if timing["speedup"] else "") + f" on {result['cores']} cores")
    search = result.get("search") or {}
    if search.get("kind") == "halving":
        rungs = ", ".join(f"{r['configurations']} x {r['epochs']}" for r in search["rung_summary"])
        ratio = timing["epochs_trained"] / timing["grid_epochs"] if timing.get("grid_epochs") else float("nan")
        print(f"rungs (configurations x epochs): {rungs}; {timing['epochs_trained']} epochs trained "
              f"(the full grid: {timing['grid_epochs']}, {ratio:.2f}x)")
    extra = ", rungs.csv, rungs.png" if search.get("kind") == "halving" else ""
    print(f"report: {os.path.join(result['out_dir'], 'report.md')} (results.csv, results.json, sensitivity.png{extra}, "
          f"best_model/)")


def _builtin(args: argparse.Namespace, flags: _DataFlags) -> Any:
    """A built-in data set or a directory of IDX files, loaded (and --sample'd) on the driver; None for Spark data."""
    if flags.kind not in ("builtin", "idx"):
        return None
    from sparkdl_lite.core import datasets

    data = datasets.load_dataset(args.data)
    if args.sample is not None:
        n_train = min(args.sample, len(data.y_train))
        data = datasets.sample(data, n_train, min(max(1, args.sample // 5), len(data.y_test)), seed=args.seed)
    return data


def cmd_tune(args: argparse.Namespace) -> int:
    grid_items, fraction, configs = _tune_flags(args)  # fail on a bad command line before Spark and TF start
    flags = _data_flags(args)
    input_shape = _input_shape(args.input_shape, args)
    t_start = time.perf_counter()
    from sparkdl_lite.cli.progress import SparkProgress

    dataset = _builtin(args, flags)  # a missing data set fails before Spark starts
    out_dir = os.path.abspath(args.out)
    os.makedirs(out_dir, exist_ok=True)

    spark, created = _session(args.master, "sparkdl-lite tune", args.remote)
    try:
        from sparkdl_lite.reports.experiments import TuneSettings, tune

        train, test, data = _frames(spark, args, flags, dataset)
        settings = TuneSettings(grid_items=grid_items, out_dir=out_dir,
                                model=_load_keras(args.model) if args.model else None,
                                model_name=os.path.basename(args.model) if args.model else None,
                                architecture=args.architecture, epochs=args.epochs, batch_size=args.batch_size,
                                seed=args.seed, folds=args.folds, fraction=fraction, parallelism=args.parallelism,
                                command="sparkdl-lite tune " + " ".join(shlex.quote(a) for a in args.argv),
                                configs=configs, search=args.search,
                                factor=3.0 if args.factor is None else args.factor, min_epochs=args.min_epochs,
                                training_data=args.training_data, staging_dir=args.staging_dir, input_shape=input_shape)

        def progress(spark_: Any, **kwargs: Any) -> Any:
            return SparkProgress(spark_, enabled=not args.no_progress, **kwargs)

        result = tune(spark, train, test, data, settings, progress_factory=progress,
                      log=lambda text: print(text, file=sys.stderr), started=t_start)
        _print_result(result)
        return 0
    finally:
        if created:
            spark.stop()


# ============================================================================ label
def _class_names(spec: Optional[str]) -> Optional[List[str]]:
    if not spec:
        return None
    from sparkdl_lite.core import datasets

    key = spec.strip().lower().replace("_", "-")
    if key == "fashion-mnist":
        return list(datasets.FASHION_MNIST_CLASSES)
    if key == "mnist":
        return list(datasets.MNIST_CLASSES)
    names = [n.strip() for n in spec.split(",")]
    if not all(names):
        raise UsageError(f"--class-names {spec!r} has an empty name; give e.g. cat,dog or fashion-mnist.")
    return names


def cmd_label(args: argparse.Namespace) -> int:
    from sparkdl_lite.cli.progress import SparkProgress

    names = _class_names(args.class_names)
    spark, created = _session(args.master, "sparkdl-lite label", args.remote)
    try:
        from sparkdl_lite.reports.experiments import label_images

        try:
            result = label_images(spark, args.model, args.images, args.out, class_names=names, recursive=args.recursive,
                                  partitions=args.partitions,
                                  progress=lambda spark_, **kw: SparkProgress(spark_, enabled=not args.no_progress, **kw))
        except FileNotFoundError as exc:
            raise UsageError(str(exc)) from None
        rows_in, rows_out, n_errors, seconds = (result[k] for k in ("rows_in", "rows_out", "errors", "seconds"))
        print(f"rows in = {rows_in}, rows out = {rows_out}, {rows_in / seconds if seconds > 0 else float('nan'):.1f} images/s "
              f"({n_errors} with an error) -> {args.out}")
        if rows_in != rows_out:
            print(f"sparkdl-lite label: error: {rows_in} rows in but {rows_out} rows out.", file=sys.stderr)
            return 1
        return 0
    finally:
        if created:
            spark.stop()


# ============================================================================ images
def cmd_images(args: argparse.Namespace) -> int:
    from PIL import Image

    from sparkdl_lite.core import datasets

    if args.limit is not None and args.limit < 0:
        raise UsageError(f"--limit must be >= 0; got {args.limit}.")
    data = datasets.load_dataset(args.data)
    x, y = (data.x_test, data.y_test) if args.split == "test" else (data.x_train, data.y_train)
    n = len(y) if args.limit is None else min(args.limit, len(y))
    os.makedirs(args.out, exist_ok=True)
    for i in range(n):
        Image.fromarray(x[i], mode="L").save(os.path.join(args.out, f"{args.split}-{i:05d}-label{int(y[i])}.png"))
    print(f"wrote {n} PNG files ({data.name} {args.split} split, 28x28 gray) to {args.out}")
    return 0


# ============================================================================ parser
def _output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verbose", action="store_true",
                   help="show Spark's, TensorFlow's and Python's log lines and warnings (default: only this "
                        "command's own lines, errors and the progress line)")
    p.add_argument("--no-progress", action="store_true", help="no progress line")
    p.add_argument("--quiet", action="store_true", dest="no_progress", help=argparse.SUPPRESS)  # 0.1.0's name


def build_parser() -> argparse.ArgumentParser:
    """The ``sparkdl-lite`` argument parser."""
    parser = argparse.ArgumentParser(prog="sparkdl-lite", description="TensorFlow models as Spark ML stages: "
                                     "distributed hyperparameter tuning and deployment at scale.")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", metavar="{tune,label,images}")
    _add_tune(sub)
    _add_label(sub)
    _add_images(sub)
    return parser


def _add_tune(sub: Any) -> None:
    default = {n: spec["default"] for n, spec in HYPERPARAMS.items()}  # of the params tune does not tune
    t = sub.add_parser("tune", help="tune a TFClassifier with CrossValidator / TrainValidationSplit and write a report",
                       description="Train the default TFClassifier and a param grid on an MNIST-style data set, a "
                                   "Parquet path or a table with Spark (one model per task), refit the best, score both "
                                   "on the test set, and write results.csv, results.json, sensitivity.png, report.md "
                                   "and best_model/ into --out.")
    _data_args(t)
    t.add_argument("--grid", nargs="+", default=[DEFAULT_GRID], metavar="NAME=V1,V2",
                   help="params to tune, space-separated name=comma,list; 256x128 (or 256;128) inside one value is a "
                        f"two-layer list (default: \"{DEFAULT_GRID}\", the reference experiment's grid). "
                        "Tunable: " + ", ".join(TUNABLE_PARAMS))
    t.add_argument("--architecture", default=default["architecture"], choices=ARCHITECTURES,
                   help="architecture when not tuned (default: %(default)s; mlp takes any features, cnn needs images "
                        "or --input-shape)")
    t.add_argument("--input-shape", metavar="HxWxC",
                   help="reshape flat features (vector or array columns) inside the network, e.g. 8x8x1 for 64 "
                        "values a row: what --architecture cnn needs on such data (TFClassifier's inputShape)")
    t.add_argument("--model", help="your own Keras model (a .keras file) instead of a built-in architecture; tune its "
                                   "layers with --grid \"<layer>.<key>=v1,v2\", e.g. hidden.units=64,256")
    t.add_argument("--epochs", type=int, default=default["epochs"], help="epochs when not tuned (default: %(default)s)")
    t.add_argument("--batch-size", type=int, default=default["batchSize"],
                   help="batch size when not tuned (default: %(default)s)")
    val = t.add_mutually_exclusive_group()
    val.add_argument("--folds", type=int, help="K-fold cross-validation (CrossValidator)")
    val.add_argument("--validation-fraction", type=float,
                     help=f"hold out this fraction of the training rows (TrainValidationSplit); the default when "
                          f"--folds is not given: {DEFAULT_VALIDATION_FRACTION}")
    t.add_argument("--sample", type=int, help="quick run: a stratified sample of N training rows and N//5 test rows "
                                              "(Parquet or table data: N and N//5 seeded random rows). Data rows: for "
                                              "N random configurations see --configs")
    t.add_argument("--search", choices=("grid", "halving"), default="grid",
                   help="grid: every configuration trains --epochs epochs (CrossValidator / TrainValidationSplit; the "
                        "default); halving: successive halving (HalvingSearch): every configuration trains "
                        "--min-epochs epochs, the best 1/--factor continue from their weights for --factor times more, "
                        "up to --epochs; the report adds a rung table and rungs.png")
    t.add_argument("--factor", type=float, help="--search halving: keep the best 1/factor per rung and multiply the "
                                                "epochs by factor (>= 2; default: 3)")
    t.add_argument("--min-epochs", type=int, help="--search halving: epochs of the first rung (default: --epochs / "
                                                  "factor^(rungs - 1), so the last rung trains --epochs); --epochs is "
                                                  "the maximum, of the last rung and of the refit")
    t.add_argument("--configs", type=int, metavar="N",
                   help="try N random configurations (seeded by --seed) instead of the whole grid: each --grid param "
                        "takes one of its values, or a draw from its range low:high (uniform) or low:high:log "
                        "(log-uniform), e.g. --grid \"learningRate=1e-4:1e-2:log hiddenLayers=32:512:log dropout=0,0.2\" "
                        "--configs 27. A range needs --configs. (Not --sample: that samples data rows.)")
    t.add_argument("--master", default="local[*]", help="Spark master URL (default: local[*])")
    t.add_argument("--remote", help="Spark Connect: sc://host:port, or local[N] for a local Connect server "
                                    "(default: $SPARK_REMOTE; else a classic session for --master)")
    t.add_argument("--parallelism", type=int, help="tuner parallelism (default: the number of param maps)")
    t.add_argument("--out", required=True, help="output directory")
    t.add_argument("--seed", type=int, default=default["seed"],
                   help="seed of sampling, splits and training (default: %(default)s)")
    _output_flags(t)
    t.set_defaults(func=cmd_tune)


def _data_args(t: argparse.ArgumentParser) -> None:
    """--data and its column, test set and data path flags."""
    t.add_argument("--data", default="fashion-mnist", help=f"{DATA_RULE} (default: %(default)s)")
    t.add_argument("--features-col", metavar="COL",
                   help="Parquet or table data: the features column, a Spark ML vector, an array of numbers or an "
                        "image struct (default: features)")
    t.add_argument("--label-col", metavar="COL",
                   help="Parquet or table data: the label column, numeric class indices 0..K-1 (default: label)")
    test = t.add_mutually_exclusive_group()
    test.add_argument("--test-data", metavar="DATA",
                      help="Parquet or table data: the test rows, a Parquet path or URI or a table name, with the "
                           "same columns (default: a split of --data, see --test-fraction)")
    test.add_argument("--test-fraction", type=float, metavar="F",
                      help=f"Parquet or table data without --test-data: hold out this fraction of the rows as the test "
                           f"set (DataFrame.randomSplit, seeded by --seed; default: {DEFAULT_TEST_FRACTION})")
    t.add_argument("--training-data", choices=DATA_PATHS, default="auto",
                   help="how the rows reach the training tasks (TFClassifier's trainingData): ship (collected once and "
                        "held in memory by every task), stream (staged once as Parquet at --staging-dir and streamed "
                        "with bounded memory) or auto (stream when the training columns are estimated above half of "
                        "spark.driver.maxResultSize, else ship; default)")
    t.add_argument("--staging-dir", metavar="URI",
                   help="where stream stages the rows (TFClassifier's stagingDir): a URI every executor can read, "
                        "hdfs://..., s3a://..., file:// on a shared disk (default: spark.sparkdl_lite.stagingDir, "
                        "else in local mode a temporary directory)")


def _add_label(sub: Any) -> None:
    lab = sub.add_parser("label", help="label images with a saved model; write parquet",
                         description="Apply a saved TFClassificationModel, PipelineModel or TFImageTransformer to images "
                                     "read by Spark's image source. Undecodable files get a null prediction and an error; "
                                     "rows in = rows out.")
    lab.add_argument("--model", required=True, help="directory of a saved TFClassificationModel, PipelineModel or TFImageTransformer")
    lab.add_argument("--images", required=True, help="directory or glob of image files (PNG, JPEG, ...)")
    lab.add_argument("--out", required=True, help="parquet output path: origin, prediction, probability, error[, label_name]")
    lab.add_argument("--class-names", help="comma-separated names of the classes 0, 1, ..., or fashion-mnist / mnist")
    lab.add_argument("--recursive", action="store_true", help="read images in sub-directories too")
    lab.add_argument("--partitions", type=int,
                     help="repartition the images into this many partitions (default: merge the file source's small "
                          "partitions to about 4,096 images each, at least one per core)")
    lab.add_argument("--master", default="local[*]", help="Spark master URL (default: local[*])")
    lab.add_argument("--remote", help="Spark Connect: sc://host:port or local[N] (default: $SPARK_REMOTE)")
    _output_flags(lab)
    lab.set_defaults(func=cmd_label)


def _add_images(sub: Any) -> None:
    im = sub.add_parser("images", help="write images of a data set as PNG files (to try label)")
    im.add_argument("--data", default="fashion-mnist", help="fashion-mnist | mnist | a directory of IDX files")
    im.add_argument("--split", default="test", choices=("test", "train"))
    im.add_argument("--limit", type=int, default=500, help="how many images, from the start of the split (default: 500)")
    im.add_argument("--out", required=True, help="output directory")
    im.set_defaults(func=cmd_images)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``sparkdl-lite`` with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    Examples
    --------
    >>> main(["--version"])  # doctest: +SKIP
    0.2.0
    0

    .. versionadded:: 0.1.0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors: keep main() returning an int
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    args.argv = argv[argv.index(args.command) + 1:] if args.command in argv else argv
    from sparkdl_lite.core import quiet

    try:
        with quiet.cli(getattr(args, "verbose", False)):
            return int(args.func(args))
    except (UsageError, FileNotFoundError, ValueError, TypeError) as exc:
        if os.environ.get("SPARKDL_LITE_DEBUG"):
            raise
        print(f"sparkdl-lite {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
