"""The sparkdl-lite command, in-process on the session's SparkSession (cli never stops a session it did not start)."""
import argparse
import csv
import json
import os
import re

import pytest

import sparkdl_lite
from sparkdl_lite import cli

FASHION = "/usr/share/datasets/fashion-mnist"
needs_fashion = pytest.mark.skipif(not os.path.isdir(FASHION) and not os.environ.get("SPARKDL_LITE_DATA"),
                                   reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == sparkdl_lite.__version__


def test_no_command_prints_usage(capsys):
    assert cli.main([]) == 2
    assert "usage: sparkdl-lite" in capsys.readouterr().err


def test_parse_grid_types_and_layer_lists():
    grid = cli.parse_grid("learningRate=1e-4,1e-3 hiddenLayers=256x128,64,32;16 architecture=MLP,cnn epochs=2")
    assert grid == [("learningRate", [1e-4, 1e-3]), ("hiddenLayers", [[256, 128], [64], [32, 16]]),
                    ("architecture", ["mlp", "cnn"]), ("epochs", [2])]
    assert cli.parse_grid(["lr=0.1", "dropout=0,0.5", "convFilters=16x32"]) == [
        ("learningRate", [0.1]), ("dropout", [0.0, 0.5]), ("convFilters", [[16, 32]])]


@pytest.mark.parametrize("spec, message", [
    ("learningrat=1e-3", r"unknown param 'learningrat'\. Did you mean 'learningRate'\? Tunable params: learningRate, hiddenLayers"),
    ("momentum=0.9", r"unknown param 'momentum'\. Tunable params:"),
    ("learningRate", r"item 'learningRate' is not name=value1,value2"),
    ("learningRate=fast", r"learningRate value 'fast' is not a number"),
    ("hiddenLayers=64x1.5", r"hiddenLayers value '1.5' is not a whole number"),
    ("architecture=rnn", r"architecture value 'rnn' is not one of \['mlp', 'cnn'\]"),
    ("epochs=1 epochs=2", r"param 'epochs' is given twice"),
    ("dropout=", r"param 'dropout' has no values"),
])
def test_parse_grid_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        cli.parse_grid(spec)


def test_bad_grid_fails_before_spark_starts(tmp_path, capsys):
    assert cli.main(["tune", "--grid", "momentum=0.9", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "sparkdl-lite tune: error: --grid: unknown param 'momentum'" in err
    assert cli.main(["tune", "--grid", "lr=1e-3", "--folds", "1", "--out", str(tmp_path)]) == 2
    assert "--folds must be >= 2" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tuned(spark, tmp_path_factory):
    out = tmp_path_factory.mktemp("tune")
    code = cli.main(["tune", "--data", "fashion-mnist", "--sample", "400", "--grid", "learningRate=1e-3,1e-2 hiddenLayers=16",
                     "--epochs", "1", "--batch-size", "64", "--out", str(out), "--no-progress"])
    return code, out


@needs_fashion
def test_tune_writes_consistent_outputs(spark, tuned, capsys):
    code, out = tuned
    assert code == 0
    assert not spark.sparkContext._jsc.sc().isStopped()  # the session it did not create still runs
    for name in ("results.csv", "results.json", "sensitivity.png", "report.md", "best_model/metadata"):
        assert os.path.exists(out / name), name
    doc = json.loads((out / "results.json").read_text())
    assert len(doc["rows"]) == 2 and doc["metric"] == "accuracy"
    best = doc["best"]
    assert best["mean"] == max(r["mean"] for r in doc["rows"])
    assert all(r["train_seconds"] > 0 and r["executor"] for r in doc["rows"])
    report = (out / "report.md").read_text()
    m = re.search(r"Best validation accuracy\*\* \(validation split\): \*\*([0-9.]+)\*\*", report)
    assert m and float(m.group(1)) == pytest.approx(best["mean"], abs=5e-5)
    test = doc["test"]
    for who in ("default", "tuned best"):
        key = "default" if who == "default" else "best"
        acc = test[key]["test_accuracy"]
        assert 0.0 <= acc <= 1.0
        assert re.search(rf"\| {who} \| .* \| {acc:.4f} \| {1 - acc:.4f} \|", report)
    assert test["best"]["params"] == {"learningRate": best["learningRate"], "hiddenLayers": best["hiddenLayers"]}
    # hiddenLayers=16 is the grid's one value: a fixed setting, so the default configuration has it too
    assert test["default"]["params"] == {"learningRate": 1e-3, "hiddenLayers": [16]}
    assert doc["timing"]["sequential_seconds"] > 0 and doc["timing"]["speedup"] > 0
    assert "Speedup" in report and "Sequential estimate" in report
    assert os.path.getsize(out / "sensitivity.png") > 20_000

    from sparkdl_lite.classifier import TFClassificationModel

    model = TFClassificationModel.load(str(out / "best_model"))
    assert model.getLearningRate() == best["learningRate"]


@needs_fashion
def test_label_keeps_every_row_and_flags_corrupt_files(spark, tuned, tmp_path, capsys):
    code, out = tuned
    assert code == 0
    images = tmp_path / "images"
    assert cli.main(["images", "--data", "fashion-mnist", "--split", "test", "--limit", "6", "--out", str(images)]) == 0
    (images / "x.png").write_bytes(os.urandom(300))  # corrupt: not a PNG
    capsys.readouterr()
    labels = tmp_path / "labels.parquet"
    assert cli.main(["label", "--model", str(out / "best_model"), "--images", str(images), "--out", str(labels),
                     "--class-names", "fashion-mnist", "--no-progress"]) == 0
    assert "rows in = 7, rows out = 7" in capsys.readouterr().out
    rows = {os.path.basename(r.origin): r for r in spark.read.parquet(str(labels)).collect()}
    assert len(rows) == 7
    bad = rows.pop("x.png")
    assert bad.prediction is None and bad.probability is None and "could not decode" in bad.error
    for r in rows.values():
        assert r.error is None and 0 <= r.prediction <= 9 and len(r.probability) == 10
        assert abs(sum(r.probability) - 1) < 1e-4
        assert r.label_name in ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                "Sneaker", "Bag", "Ankle boot")


def test_label_rejects_a_directory_without_a_model(spark, tmp_path, capsys):
    assert cli.main(["label", "--model", str(tmp_path), "--images", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "is not a saved Spark ML stage" in capsys.readouterr().err


def test_parse_grid_layer_params():
    assert cli.parse_grid("lr=1e-3 hidden.units=64,256 drop.rate=0.2,0.5 base/conv.padding=same conv.use_bias=false") == [
        ("learningRate", [1e-3]), ("hidden.units", [64, 256]), ("drop.rate", [0.2, 0.5]),
        ("base/conv.padding", ["same"]), ("conv.use_bias", [False])]


@needs_fashion
def test_tune_own_model_then_label_its_best(spark, tmp_path, capsys):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    h = keras.layers.Conv2D(4, 3, name="conv")(h)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Flatten(name="flat")(keras.layers.MaxPooling2D(4, name="pool")(keras.layers.Activation("relu")(h)))
    h = keras.layers.Dropout(0.2, name="drop")(keras.layers.Dense(8, activation="relu", name="hidden")(h))
    keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="out")(h)).save(tmp_path / "mine.keras")
    assert cli.main(["tune", "--model", str(tmp_path / "x.h5"), "--out", str(tmp_path / "t")]) == 2
    assert "is not a .keras file" in capsys.readouterr().err
    assert cli.main(["tune", "--grid", "hidden.units=8", "--out", str(tmp_path / "t")]) == 2
    assert "is a layer param; it needs --model" in capsys.readouterr().err
    assert cli.main(["tune", "--model", str(tmp_path / "mine.keras"), "--grid", "hidden.unit=8",
                     "--out", str(tmp_path / "t")]) == 2
    assert "layer 'hidden' (Dense) has no config key 'unit'. Its keys: [" in capsys.readouterr().err
    out = tmp_path / "tune"
    code = cli.main(["tune", "--model", str(tmp_path / "mine.keras"), "--data", "fashion-mnist", "--sample", "300",
                     "--grid", "learningRate=1e-3 hidden.units=8,16", "--epochs", "1", "--batch-size", "32",
                     "--out", str(out), "--no-progress"])
    assert code == 0
    doc = json.loads((out / "results.json").read_text())
    assert sorted(r["hidden.units"] for r in doc["rows"]) == [8, 16]
    assert doc["test"]["default"]["params"] == {"learningRate": 1e-3, "hidden.units": 8}
    assert "model=mine.keras" in (out / "report.md").read_text()
    assert os.path.exists(out / "best_model" / "data" / "model.keras")
    images = tmp_path / "images"
    assert cli.main(["images", "--data", "fashion-mnist", "--split", "test", "--limit", "5", "--out", str(images)]) == 0
    assert cli.main(["label", "--model", str(out / "best_model"), "--images", str(images),
                     "--out", str(tmp_path / "labels.parquet"), "--no-progress"]) == 0
    rows = spark.read.parquet(str(tmp_path / "labels.parquet")).collect()
    assert len(rows) == 5 and all(r.error is None and abs(sum(r.probability) - 1) < 1e-4 for r in rows)


def test_commands_are_tune_label_images():
    # 0.1.0's `bench` only printed where the benchmarks are; they are scripts in benchmarks/ (issue #14)
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(sub.choices) == ["images", "label", "tune"]
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["bench"])
    assert exc.value.code == 2


# ---------------------------------------------------------------------------- tune on the user's data (#23 item 7)
def _digits_frame(spark, vector=False):
    """scikit-learn's 1,797 real 8x8 digits: 64 pixel values 0-16 as array<double> (or a vector) `pixels`, label `digit`."""
    from pyspark.ml.linalg import Vectors, VectorUDT
    from pyspark.sql import types as T
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = [Vectors.dense(x) if vector else [float(v) for v in x] for x in digits.data]
    schema = T.StructType([T.StructField("pixels", VectorUDT() if vector else T.ArrayType(T.DoubleType())),
                           T.StructField("digit", T.LongType()), T.StructField("note", T.StringType())])
    return spark.createDataFrame([(p, int(y), "x") for p, y in zip(pixels, digits.target)], schema)


@pytest.fixture(scope="module")
def digits_parquet(spark, tmp_path_factory):
    path = tmp_path_factory.mktemp("user") / "digits"
    _digits_frame(spark).write.parquet(str(path))
    return path


def test_data_kind_rule(tmp_path):
    idx = tmp_path / "idx"
    idx.mkdir()
    (idx / "train-images-idx3-ubyte.gz").write_bytes(b"")
    assert cli.data_kind("fashion-mnist") == cli.data_kind("MNIST") == "builtin"
    assert cli.data_kind(str(idx)) == "idx"
    assert cli.data_kind(str(tmp_path)) == "parquet"  # an existing path that holds no IDX files
    for value in ("s3a://bucket/digits", "hdfs:///data/d", "file:///tmp/x", "digits.parquet", "data/digits"):
        assert cli.data_kind(value) == "parquet", value
    assert cli.data_kind("db.digits") == cli.data_kind("digits") == "table"


def test_tune_parquet_dir_with_column_flags_writes_the_report(spark, digits_parquet, tmp_path, capsys):
    out = tmp_path / "tune"
    code = cli.main(["tune", "--data", str(digits_parquet), "--features-col", "pixels", "--label-col", "digit",
                     "--grid", "learningRate=1e-3,3e-3", "--epochs", "2", "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert not spark.sparkContext._jsc.sc().isStopped()
    for name in ("results.csv", "results.json", "sensitivity.png", "report.md", "best_model/metadata"):
        assert os.path.exists(out / name), name
    report = (out / "report.md").read_text()
    data_line = next(line for line in report.splitlines() if line.startswith("- **data**"))
    assert f"Parquet {str(digits_parquet)!r}" in data_line
    assert "column 'pixels' (array<double>)" in data_line and "label: column 'digit'" in data_line
    assert "10 classes" in data_line and "20% of the rows by randomSplit, seed 0" in data_line
    assert "trainingData=auto" in report
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(float(r["learningRate"]) for r in rows) == [1e-3, 3e-3]
    doc = json.loads((out / "results.json").read_text())
    data = doc["data"]
    assert (data["features_col"], data["label_col"], data["features_kind"]) == ("pixels", "digit", "array")
    assert data["train_rows"] + data["test_rows"] == 1797 and 250 < data["test_rows"] < 470
    test = doc["test"]
    assert test["best"]["test_accuracy"] > 0.8, test  # 1,797 real digits: 2 epochs of an MLP already learn them
    assert 0.0 < test["default"]["test_accuracy"] <= 1.0
    assert re.search(rf"\| tuned best \| .* \| {test['best']['test_accuracy']:.4f} \|", report)

    from sparkdl_lite.classifier import TFClassificationModel

    model = TFClassificationModel.load(str(out / "best_model"))
    assert (model.getFeaturesCol(), model.numClasses) == ("pixels", 10)


def test_tune_table_vector_column_test_data_and_sample(spark, digits_parquet, tmp_path, capsys):
    frame = _digits_frame(spark, vector=True)
    frame.createOrReplaceTempView("sparkdl_lite_digits")
    test_dir = tmp_path / "test.parquet"
    frame.limit(300).write.parquet(str(test_dir))
    out, stage = tmp_path / "tune", tmp_path / "stage"
    code = cli.main(["tune", "--data", "sparkdl_lite_digits", "--features-col", "pixels", "--label-col", "digit",
                     "--test-data", str(test_dir), "--sample", "200", "--grid", "learningRate=3e-3", "--epochs", "1",
                     "--training-data", "stream", "--staging-dir", stage.as_uri(), "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    doc = json.loads((out / "results.json").read_text())
    assert (doc["data"]["train_rows"], doc["data"]["test_rows"]) == (200, 40)  # --sample N: N and N // 5 rows
    assert doc["data"]["source"] == "table 'sparkdl_lite_digits'" and doc["data"]["features_kind"] == "vector"
    assert f"test rows: Parquet {str(test_dir)!r}" in doc["setup"]["data"]
    assert f"trainingData=stream, stagingDir={stage.as_uri()}" in doc["setup"]["fixed params"]

    from sparkdl_lite.classifier import TFClassificationModel

    model = TFClassificationModel.load(str(out / "best_model"))
    assert model.trainingInfo["data"] == "stream"  # the refit read the rows staged as Parquet, not shipped ones
    assert not stage.exists() or not any(stage.iterdir())  # staged files removed when the fits ended


def test_tune_user_data_errors_are_one_clear_line(spark, digits_parquet, tmp_path, capsys):
    base = ["tune", "--data", str(digits_parquet), "--grid", "learningRate=1e-3", "--out", str(tmp_path / "o")]
    assert cli.main(base + ["--features-col", "pixel", "--label-col", "digit"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"sparkdl-lite tune: error: --features-col 'pixel' is not a column of Parquet {str(digits_parquet)!r}. "
                   f"Available columns: ['pixels', 'digit', 'note'].")
    assert cli.main(base + ["--features-col", "pixels"]) == 2  # --label-col defaults to 'label'
    assert "--label-col 'label' is not a column of" in capsys.readouterr().err
    assert cli.main(base + ["--features-col", "note", "--label-col", "digit"]) == 2
    assert ("--features-col 'note' of Parquet" in (err := capsys.readouterr().err)
            and "must be a Spark ML vector, an array of numbers or an image struct; got string." in err)
    assert cli.main(base + ["--features-col", "pixels", "--label-col", "digit", "--architecture", "cnn"]) == 2
    assert "--architecture cnn needs image-shaped features" in (err := capsys.readouterr().err) and "--input-shape" in err
    assert cli.main(base + ["--features-col", "pixels", "--label-col", "digit", "--input-shape", "8xx1"]) == 2
    assert "--input-shape must be sizes >= 1 joined by x" in capsys.readouterr().err
    assert cli.main(base + ["--features-col", "pixels", "--label-col", "digit", "--test-fraction", "1.5"]) == 2
    assert "--test-fraction must be in (0, 1); got 1.5." in capsys.readouterr().err
    assert cli.main(["tune", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert cli.main(["tune", "--data", "no_such_table_xyz", "--out", str(tmp_path / "o")]) == 2
    assert "--data 'no_such_table_xyz':" in (err := capsys.readouterr().err) and "read as a table name" in err
    assert cli.main(["tune", "--data", "fashion-mnist", "--features-col", "pixels", "--out", str(tmp_path / "o")]) == 2
    assert "--features-col applies to Parquet or table data" in capsys.readouterr().err
