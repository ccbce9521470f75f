"""data.transform (U7): heavy-tailed columns squashed inside the model, fitted on the training
split, kept by model.keras and applied by predict to raw rows."""

import csv

import numpy as np
import pytest

ROWS = 80


def _write_table(tmp_path):
    """income: lognormal amounts with two negative ones (refunds); ratio: Cauchy, centred away
    from zero; city: text; plain: normal. The label follows log(income)."""
    rng = np.random.default_rng(0)
    income = np.exp(rng.normal(8, 2, ROWS))
    income[[3, 40]] *= -1
    ratio = 50 + rng.standard_cauchy(ROWS)
    city = rng.choice(["oslo", "lima", "pune"], ROWS)
    plain = rng.normal(0, 1, ROWS)
    label = np.where(np.log(np.abs(income)) > 8, "rich", "poor")
    path = tmp_path / "people.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["income", "ratio", "city", "plain", "label"])
        writer.writerows(zip(income, ratio, city, plain, label, strict=True))
    return path


def _signed_log1p(x):
    return np.sign(x) * np.log1p(np.abs(x))


def test_squashed_columns_reach_the_first_layer_log_scaled_and_bounded(
    project, make_config, tmp_path
):
    """What dense_0 sees: income as standardized sign(x) log1p(|x|), ratio as standardized tanh,
    both with the training split's statistics; plain as the pipeline standardized it."""
    import keras

    config = make_config(
        f"data.source={_write_table(tmp_path)}",
        "model.name=mlp",
        "data.transform={income: log1p, ratio: tanh}",
    )
    data = project.data.load(config)
    model = project.models.build_model(config, data)
    first = keras.Model(model.input, model.get_layer("dense_0").input)
    numeric = ["income", "ratio", "plain"]  # TabularInput: numeric columns first, then embeddings
    at = {name: data.feature_names.index(name) for name in numeric}

    def seen(split):
        return first.predict(data.normalize(split.x), verbose=0)[:, :3]

    train, everything = seen(data.train), np.concatenate([seen(s) for s in (data.val, data.test)])
    logged = _signed_log1p(data.train.x[:, at["income"]].astype(np.float64))
    assert np.abs(train[:, 0] - (logged - logged.mean()) / logged.std()).max() < 1e-4
    assert np.abs(train[:, :2].mean(axis=0)).max() < 1e-5  # standardized on train, not all rows
    assert np.abs(train[:, :2].std(axis=0) - 1).max() < 1e-4
    assert np.isfinite(train).all() and (data.train.x[:, at["income"]] < 0).any()
    # tanh bounds the Cauchy tail: no value past a few std, where the raw z-scores go far out
    raw_z = np.abs(data.normalize(data.train.x)[:, at["ratio"]])
    assert raw_z.max() > 5 and np.abs(np.concatenate([train, everything])[:, 1]).max() < 4
    assert np.abs(train[:, 2] - data.normalize(data.train.x)[:, at["plain"]]).max() < 1e-6


def test_a_model_with_squashed_columns_saves_loads_and_predicts_raw_rows(
    project, make_config, tmp_path
):
    """model.keras keeps the fitted layer and gives the same outputs once loaded; predict on raw
    CSV rows gives those outputs too."""
    import keras

    source = _write_table(tmp_path)
    config = make_config(
        f"data.source={source}", "model.name=mlp", "data.transform={income: log1p, ratio: tanh}"
    )
    data = project.data.load(config)
    model = project.models.with_preprocessing(project.models.build_model(config, data), data)
    rng = np.random.default_rng(1)  # weights that make every input matter to the outputs
    model.set_weights([rng.normal(0, 0.5, w.shape) for w in model.get_weights()])
    config.run_dir.mkdir(parents=True)
    model.save(config.run_dir / "model.keras")
    project.train.write_data_description(data, config, config.run_dir)
    loaded = keras.saving.load_model(config.run_dir / "model.keras")
    squash = next(layer for layer in loaded.layers if isinstance(layer, keras.Model)).get_layer(
        "squash"
    )
    assert isinstance(squash, project.models.SquashColumns)
    assert squash.get_config() == model.get_layer("mlp").get_layer("squash").get_config()

    with source.open() as handle:
        rows = list(csv.reader(handle))[1:7]
    new = tmp_path / "new.csv"
    new.write_text("income,ratio,city,plain\n" + "".join(",".join(r[:4]) + "\n" for r in rows))
    config.predict.input = str(new)
    assert project.predict.predict(config) == 0
    with (config.run_dir / "predictions.csv").open() as handle:
        predicted = list(csv.DictReader(handle))
    x = np.array([[float(r[0]), float(r[1]), 0.0, float(r[3])] for r in rows], np.float32)
    x[:, 2] = [data.vocabularies[2].index(r[2]) + 1 for r in rows]
    expected = project.models.predict_outputs(model, data, x)
    assert np.abs(project.models.predict_outputs(loaded, data, x) - expected).max() < 1e-6
    got = np.array(
        [[float(row[f"probability_{c}"]) for c in data.class_names] for row in predicted]
    )
    assert np.abs(got - expected).max() < 1e-5 and expected[:, 0].std() > 0.01


def test_inspects_heavy_tail_advice_is_a_data_transform_that_builds(project, make_config, tmp_path):
    """heavy_tailed_feature ends with a ready-to-paste data.transform naming every heavy column;
    pasted, it builds a model that squashes them."""
    import re
    import types

    source = _write_table(tmp_path)
    data = project.data.load(make_config(f"data.source={source}"))
    look = types.SimpleNamespace(data=data, cache={})  # what the finding reads of a Look
    (finding,) = project.inspection.features.heavy_tailed_feature(look)
    pasted = re.search(r"data\.transform='(.*)'$", finding.detail).group(0).replace("'", "")
    assert pasted == "data.transform={income: tanh, ratio: log1p}"  # income has refunds (< 0)
    config = make_config(f"data.source={source}", "model.name=linear", pasted)
    squash = project.models.build_model(config, data).get_layer("squash")
    assert [data.feature_names[j] for j in squash.columns] == ["income", "ratio"]


@pytest.mark.parametrize(
    ("source", "transform", "message"),
    [
        ("table", "{incme: log1p}", "has no column 'incme' (did you mean 'income'?)"),
        ("table", "{city: tanh}", "column 'city' holds text (categories)"),
        ("digits", "{x: log1p}", "data.transform squashes table columns; digits holds images"),
    ],
)
def test_a_bad_transform_column_is_one_line(
    project, make_config, tmp_path, source, transform, message
):
    source = _write_table(tmp_path) if source == "table" else source
    config = make_config(f"data.source={source}", f"data.transform={transform}")
    data = project.data.load(config)
    with pytest.raises(project.errors.UsageError) as error:
        project.models.build_model(config, data)
    assert message in str(error.value) and "\n" not in str(error.value)
