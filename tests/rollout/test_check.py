"""The post-deploy check's verdict."""

from __future__ import annotations

from datetime import timedelta

import pytest

from scripts.rollout import CheckPolicy, judge_check

POLICY = CheckPolicy(items=20, timeout=timedelta(seconds=60), min_predicted_share=0.95)


def _judge(dead=0, **status):
    return judge_check(
        POLICY, batch_id="synthetic-1", status=status, dead_lettered=dead, elapsed_s=4.2
    )


def test_a_completed_batch_with_every_item_predicted_passes():
    result = _judge(state="completed", completed=20, failed=0)
    assert result.ok and result.problems == ()
    assert result.to_dict()["predicted_share"] == 1.0


def test_a_batch_whose_items_all_failed_fails_although_it_completed():
    # The incident: a worker that fails every item still "completes" the batch.
    result = _judge(state="completed", completed=0, failed=20)
    assert not result.ok
    assert "0 of 20 items predicted (0%), at least 95% required" in result.problems


def test_too_few_predicted_fails():
    assert not _judge(state="completed", completed=18, failed=2).ok
    assert _judge(state="completed", completed=19, failed=1).ok


def test_dead_letters_fail_the_check():
    result = _judge(dead=1, state="completed", completed=20)
    assert not result.ok and "1 message(s) dead-lettered" in result.detail


def test_a_batch_still_running_at_the_deadline_fails_with_the_bound():
    result = _judge(state="running", completed=10)
    assert not result.ok and "not complete within 60 s" in result.detail


def test_a_batch_closed_partial_fails_with_its_reason():
    result = _judge(state="partial", completed=15, reason="5 items missing")
    assert not result.ok and "batch ended partial (5 items missing)" in result.detail


@pytest.mark.parametrize(
    "kwargs",
    [
        {"items": 0},
        {"min_predicted_share": 0},
        {"min_predicted_share": 1.2},
        {"timeout": timedelta(0)},
    ],
)
def test_policy_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        CheckPolicy(**kwargs)
