"""The baseline configs load, carry the published settings, and say which runs are causal."""
from __future__ import annotations

import pytest

from erc.baselines.config import TRAIN_BASELINE_IDENTITY, BaselineTrainConfig
from erc.core.config import ConfigError, config_from_flat, resolve_config

EMB = {"data": {"text_embeddings": "emb.npz"}}


@pytest.mark.parametrize("dataset", ["cosmic_iemocap", "cosmic_meld"])
@pytest.mark.parametrize("method", ["dialoguernn", "dialoguegcn", "mlp"])
def test_configs_load(project_root, method, dataset):
    cfg = resolve_config(BaselineTrainConfig, EMB, project_root / "configs" / f"baseline_{method}_{dataset}.yaml")
    assert cfg.method == method and cfg.data.dataset == dataset and cfg.data.text_source == "embeddings"
    assert cfg.causal is (method == "mlp")                      # the published settings read both directions


def test_published_iemocap_settings(project_root):
    configs = project_root / "configs"
    rnn = resolve_config(BaselineTrainConfig, EMB, configs / "baseline_dialoguernn_cosmic_iemocap.yaml")
    assert (rnn.global_dim, rnn.party_dim, rnn.emotion_dim, rnn.hidden_dim) == (500, 500, 300, 300)
    assert (rnn.lr, rnn.weight_decay, rnn.batch_size, rnn.epochs) == (1.0e-4, 1.0e-5, 30, 60)
    assert rnn.class_weighting == "inverse_frequency" and not rnn.listener_update
    gcn = resolve_config(BaselineTrainConfig, EMB, configs / "baseline_dialoguegcn_cosmic_iemocap.yaml")
    assert (gcn.win_p, gcn.win_f, gcn.encoder_dim, gcn.graph_dim, gcn.num_bases) == (10, 10, 100, 100, 30)
    assert gcn.edge_attention and gcn.nodal_attention


def test_edge_attention_off_leaves_the_run_identity_of_earlier_runs_unchanged():
    off = config_from_flat(BaselineTrainConfig, {"method": "dialoguegcn"})
    on = config_from_flat(BaselineTrainConfig, {"method": "dialoguegcn", "edge_attention": True})
    a, b = (TRAIN_BASELINE_IDENTITY.identity("train-baseline", c) for c in (off, on))
    assert "edge_attention" not in a.config and b.config["edge_attention"] is True
    # the fingerprint the code before the field gave this config (commit 8beffba): recorded runs keep theirs
    assert a.fingerprint == "c2ebcd5b90f792f4"
    assert a.changes(b) == ["edge_attention '(absent)' -> True"]


def test_causal_variants_and_bad_values():
    assert config_from_flat(BaselineTrainConfig, {"method": "dialoguernn", "bidirectional": False}).causal
    assert not config_from_flat(BaselineTrainConfig, {"method": "dialoguegcn", "win_f": 2}).causal
    assert config_from_flat(BaselineTrainConfig, {"method": "dialoguegcn", "win_f": 0}).causal
    with pytest.raises(ConfigError, match="class_weights"):
        config_from_flat(BaselineTrainConfig, {"class_weighting": "given"})
    with pytest.raises(ConfigError, match="method"):
        config_from_flat(BaselineTrainConfig, {"method": "lstm"})
