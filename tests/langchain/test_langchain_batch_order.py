"""G4 without request ids: ``batch``/``abatch`` replay sample for sample, input by input.

Identical inputs in one namespace compete for that namespace's next samples; which input gets
which sample must not depend on thread or task scheduling, or a replay in another namespace hands
the same samples to different inputs (seen before: A [1, 3, 2], B [1, 2, 3]). The wrapper runs
a batch's inputs as one group checked in input order, so the position decides.
"""
from __future__ import annotations

from langchain_core.callbacks import BaseCallbackHandler

from _lc_helpers import ns, sample_no

PROMPT = "Pick a number."


class SlowSyncHandler(BaseCallbackHandler):
    """A sync callback handler: LangChain runs it in a thread pool from async code, so the
    inputs of an ``abatch`` reach the model in whatever order those threads finish."""

    def on_chat_model_start(self, *args, **kwargs):
        import random
        import time

        time.sleep(random.random() / 200)


def test_sync_batch_replays_each_input_its_own_sample(make_chat, fake_server):
    chat = make_chat(batch_size=64, batch_timeout=0.05)
    first = [sample_no(m) for m in chat.batch([PROMPT] * 4, config=ns("A"))]
    assert sorted(first) == [1, 2, 3, 4]
    for round_ in range(6):  # the old thread-pool batch raced: it recurred within a few rounds
        again = [sample_no(m) for m in chat.batch([PROMPT] * 4, config=ns(f"B{round_}"))]
        assert again == first
    assert fake_server.request_count == 1  # four identical misses merged into one n=4 call (G3)


async def test_async_batch_replays_each_input_its_own_sample_even_with_sync_callbacks(make_chat, fake_server):
    chat = make_chat(batch_size=64, batch_timeout=0.05)
    config = {**ns("A"), "callbacks": [SlowSyncHandler()]}
    first = [sample_no(m) for m in await chat.abatch([PROMPT] * 4, config=config)]
    assert sorted(first) == [1, 2, 3, 4]
    for round_ in range(6):
        config = {**ns(f"B{round_}"), "callbacks": [SlowSyncHandler()]}
        again = [sample_no(m) for m in await chat.abatch([PROMPT] * 4, config=config)]
        assert again == first
    assert fake_server.request_count == 1


def test_a_batch_larger_than_the_thread_pool_completes_and_replays_in_order(make_chat, fake_server):
    """LangChain's thread pool has os.cpu_count() + 4 workers: a batch larger than that must
    not wait for inputs that cannot start (they form the next group)."""
    from langchain_core.runnables.config import get_executor_for_config

    with get_executor_for_config({}) as executor:
        size = executor._max_workers + 3
    chat = make_chat(batch_size=64, batch_timeout=0.05)
    first = [sample_no(m) for m in chat.batch([PROMPT] * size, config=ns("A"))]
    assert sorted(first) == list(range(1, size + 1))
    again = [sample_no(m) for m in chat.batch([PROMPT] * size, config=ns("B"))]
    limited = [sample_no(m) for m in chat.batch([PROMPT] * size, config={**ns("C"), "max_concurrency": 2})]
    assert again == first and limited == first
