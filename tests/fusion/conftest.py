"""Fixtures of the fusion tests."""
from __future__ import annotations

import dataclasses

import pytest


@pytest.fixture(scope="session")
def ses_corpus(synthetic_corpus):
    """The synthetic corpus with IEMOCAP-shaped ids (``Ses01_dlg000_M000``), as the release reader expects."""
    utt = synthetic_corpus.utterances.copy()
    for col in ("utterance_id", "dialogue_id"):
        utt[col] = utt[col].str.replace("^Syn", "Ses", regex=True)
    return dataclasses.replace(synthetic_corpus, utterances=utt)


@pytest.fixture(scope="session")
def ses_release(tmp_path_factory, ses_corpus):
    """``ses_corpus`` in the IEMOCAP release layout; session 5 has transcripts only (unlabeled)."""
    return ses_corpus.write_iemocap_release(tmp_path_factory.mktemp("ses_release"), unlabeled_sessions=(5,))
