"""Inspect AI on CacheSaver (issue 23, item 1): real inspect_ai evals in-process, real HTTP from
Inspect's OpenAI provider to the local fake server. Every test counts the server's requests and
samples: a replay is 0 requests."""
from __future__ import annotations

import pytest

inspect_ai = pytest.importorskip("inspect_ai")
from inspect_ai import Task  # noqa: E402
from inspect_ai import eval as inspect_eval  # noqa: E402
from inspect_ai.dataset import MemoryDataset, Sample  # noqa: E402
from inspect_ai.scorer import includes  # noqa: E402
from inspect_ai.model import get_model  # noqa: E402
from inspect_ai.solver import generate, solver, use_tools  # noqa: E402
from inspect_ai.tool import tool  # noqa: E402

import cachesaver_inspect  # noqa: E402,F401  (registers cachesaver/ as installing the package does)
from _evals_page import page_blocks  # noqa: E402

MODEL = "cachesaver/openai/gpt-4o-mini"


def make_task(name: str = "qa", n: int = 5, same_prompt: bool = False, reverse: bool = False, solver=None):
    samples = [Sample(input="Same question?" if same_prompt else f"Question {i}?", target="sample 1", id=i)
               for i in range(n)]
    if reverse:
        samples.reverse()
    return Task(dataset=MemoryDataset(samples), solver=solver or [generate()], scorer=includes(), name=name)


def run(task, server, store, tmp_path, epochs: int = 4, **kwargs):
    [log] = inspect_eval(task, model=MODEL, model_base_url=server.base_url, model_args={"store": str(store)},
                         epochs=epochs, temperature=0.7, display="none", log_dir=str(tmp_path / "logs"),
                         **kwargs)
    assert log.status == "success", log.error
    return log


def outputs(log) -> dict:
    return {(s.id, s.epoch): s.output.completion for s in log.samples}


def scores(log) -> dict:
    return {(s.id, s.epoch): s.scores["includes"].value for s in log.samples}


def cached_flags(log) -> list[bool]:
    return [flag for s in log.samples for flag in s.output.metadata["cachesaver"]["cached"]]


#: Prices for the inner model ($ per million tokens), given to Inspect as ``--model-cost-config`` is.
PRICES = {"openai/gpt-4o-mini": {"input": 1.0, "output": 2.0, "input_cache_write": 1.0, "input_cache_read": 0.5}}


@pytest.fixture
def priced():
    """Inspect prices the inner model (Inspect keeps prices process-wide: forgotten after)."""
    from inspect_ai.model import ModelCost
    from inspect_ai.model._model_info import clear_model_info_cache

    yield {name: ModelCost(**cost) for name, cost in PRICES.items()}
    clear_model_info_cache()


def logged_cached_flags(log) -> dict:
    """Per (sample, epoch): the ``cached`` flags of each model event, read back from the log file."""
    from inspect_ai.log import read_eval_log

    on_disk = read_eval_log(log.location)
    return {(s.id, s.epoch): [e.output.metadata["cachesaver"]["cached"] for e in s.events if e.event == "model"]
            for s in on_disk.samples}


def test_epochs_are_fresh_and_a_rerun_replays_them_exactly(fake_server, api_key_env, tmp_path, priced):
    store = tmp_path / "store"
    first = run(make_task(), fake_server, store, tmp_path, model_cost_config=priced)
    by_sample: dict = {}
    for (sample_id, _), text in outputs(first).items():
        by_sample.setdefault(sample_id, set()).add(text)
    assert {k: len(v) for k, v in by_sample.items()} == {i: 4 for i in range(5)}
    assert fake_server.samples_generated == 20
    assert cached_flags(first) == [False] * 20
    # Usage as Inspect expects it: the tokens the server billed, priced by Inspect at the inner
    # model's rates.
    first_usage = first.stats.model_usage[MODEL]
    assert (first_usage.input_tokens, first_usage.output_tokens) == (fake_server.prompt_tokens,
                                                                      fake_server.completion_tokens)
    rates = PRICES["openai/gpt-4o-mini"]
    assert first_usage.total_cost == pytest.approx(
        (fake_server.prompt_tokens * rates["input"] + fake_server.completion_tokens * rates["output"]) / 1e6)
    assert first_usage.total_cost > 0
    # The eval log file records which samples were cached: one model event per (sample, epoch).
    assert logged_cached_flags(first) == {(i, e): [[False]] for i in range(5) for e in range(1, 5)}

    fake_server.reset_counters()
    again = run(make_task(), fake_server, store, tmp_path, model_cost_config=priced)
    assert fake_server.request_count == 0
    assert outputs(again) == outputs(first)
    assert scores(again) == scores(first)
    assert cached_flags(again) == [True] * 20
    assert logged_cached_flags(again) == {(i, e): [[True]] for i in range(5) for e in range(1, 5)}
    # Hits cost nothing: zero tokens, and Inspect prices the rerun at exactly 0 (not "unknown").
    usage = again.stats.model_usage[MODEL]
    assert (usage.input_tokens, usage.output_tokens, usage.total_cost) == (0, 0, 0.0)
    assert all(s.model_usage[MODEL].total_cost == 0.0 for s in again.samples)


def test_more_epochs_generate_only_the_new_ones_and_another_task_reuses(fake_server, api_key_env, tmp_path):
    store = tmp_path / "store"
    four = outputs(run(make_task(), fake_server, store, tmp_path, epochs=4))
    fake_server.reset_counters()
    six = outputs(run(make_task(), fake_server, store, tmp_path, epochs=6))
    assert fake_server.samples_generated == 10  # 2 new epochs x 5 samples
    assert {k: v for k, v in six.items() if k[1] <= 4} == four
    assert all(len({six[(i, e)] for e in range(1, 7)}) == 6 for i in range(5))

    fake_server.reset_counters()
    other = outputs(run(make_task(name="qa-v2"), fake_server, store, tmp_path, epochs=4))
    assert fake_server.request_count == 0  # another task, the same prompts: every sample reused
    assert other == four

    # offline: stored samples only (what a bundle as store gives); a miss fails, never calls.
    [log] = inspect_eval(make_task(), model=MODEL, model_base_url=fake_server.base_url,
                         model_args={"store": str(store), "offline": "true"}, epochs=7, temperature=0.7,
                         display="none", log_dir=str(tmp_path / "logs"))
    assert fake_server.request_count == 0
    assert log.status == "error" and "OfflineMissError" in log.error.message


def test_replay_is_exact_whatever_order_inspect_runs_samples_in(fake_server, api_key_env, tmp_path):
    """Five samples share one prompt, so which sample gets which stored answer depends on the
    request ids (sample id, epoch, call), not on scheduling: the rerun runs them in reverse
    order, one at a time, and every (sample, epoch) still gets its own output."""
    store = tmp_path / "store"
    first = outputs(run(make_task(same_prompt=True), fake_server, store, tmp_path, epochs=2))
    assert len(set(first.values())) == 10
    fake_server.reset_counters()
    again = outputs(run(make_task(same_prompt=True, reverse=True), fake_server, store, tmp_path, epochs=2,
                        max_samples=1))
    assert fake_server.request_count == 0
    assert again == first



def test_a_call_inspect_retried_keeps_its_request_id_and_the_rerun_replays(fake_server, api_key_env, tmp_path):
    """A failed attempt (HTTP 500; the inner OpenAI client's own retries off with
    ``-M max_retries=0``, so Inspect's retry calls the provider again) stores nothing, and its
    retry is the same call of the sample: request id ``call-000000``, not ``call-000001``. The
    rerun, with no failure, replays every sample exactly with 0 requests (with attempt-counted
    ids, the retried sample's id was unknown to the rerun, which generated a new sample)."""
    store = tmp_path / "store"
    fake_server.fail_next(500, count=1)
    [first] = inspect_eval(make_task(n=3, same_prompt=True), model=MODEL, model_base_url=fake_server.base_url,
                           model_args={"store": str(store), "max_retries": 0}, epochs=1, temperature=0.7,
                           display="none", log_dir=str(tmp_path / "logs"), max_samples=1)
    assert first.status == "success", first.error
    assert fake_server.request_count == 4 and fake_server.samples_generated == 3  # 1 failed + 3
    assert {s.id: s.output.metadata["cachesaver"]["request_id"] for s in first.samples} == {
        i: f"{i}/epoch-000001/call-000000" for i in range(3)}
    fake_server.reset_counters()
    [again] = inspect_eval(make_task(n=3, same_prompt=True, reverse=True), model=MODEL,
                           model_base_url=fake_server.base_url, model_args={"store": str(store), "max_retries": 0},
                           epochs=1, temperature=0.7, display="none", log_dir=str(tmp_path / "logs"), max_samples=1)
    assert again.status == "success", again.error
    assert fake_server.request_count == 0
    assert outputs(again) == outputs(first)


@solver
def pass_at_3():
    """pass@k the way a solver does it: three ``generate`` calls on the same input."""
    async def solve(state, generate_fn):
        model = get_model()
        answers = [await model.generate(state.input) for _ in range(3)]
        state.metadata["answers"] = [a.completion for a in answers]
        state.metadata["namespaces"] = [a.metadata["cachesaver"]["namespace"] for a in answers]
        state.output = answers[0]
        return state

    return solve


def test_repeated_generate_calls_in_one_sample_are_fresh_and_replay(fake_server, api_key_env, tmp_path):
    """Within one sample and epoch, three calls with the same input get three distinct samples
    (Inspect's own cache keys on the epoch and would answer all three with one); the same eval
    again replays each call's sample with 0 requests. ``-M run_name`` names the namespace."""
    store = tmp_path / "store"

    def answers(log):
        return {(s.id, s.epoch): s.metadata["answers"] for s in log.samples}

    def evaluate(**naming):
        [log] = inspect_eval(make_task(n=2, solver=[pass_at_3()]), model=MODEL, model_base_url=fake_server.base_url,
                             model_args={"store": str(store), **(naming or {"run_name": "passk"})}, epochs=2,
                             temperature=0.7, display="none", log_dir=str(tmp_path / "logs"))
        assert log.status == "success", log.error
        return log

    first = evaluate()
    assert fake_server.samples_generated == 12
    assert all(len(set(a)) == 3 for a in answers(first).values())
    assert {ns for s in first.samples for ns in s.metadata["namespaces"]} == {
        "inspect/passk/qa/openai/gpt-4o-mini"}
    fake_server.reset_counters()
    again = evaluate()
    assert fake_server.request_count == 0
    assert answers(again) == answers(first)
    # -M namespace= names the whole namespace; another namespace reuses the stored samples (which
    # epoch of a sample gets which of them follows arrival there: compared per sample).
    named = evaluate(namespace="my-eval")
    assert {ns for s in named.samples for ns in s.metadata["namespaces"]} == {"my-eval"}

    def per_sample(log):
        return {i: sorted(a for (sid, _), got in answers(log).items() if sid == i for a in got) for i in range(2)}

    assert fake_server.request_count == 0 and per_sample(named) == per_sample(first)


def test_structured_output_reaches_the_model_and_is_keyed(fake_server, api_key_env, tmp_path):
    """``response_schema`` goes through the wrapped Inspect model to the server as a JSON-schema
    response format; the outputs follow the schema and replay with 0 requests; another schema is
    another key (its outputs are generated, never the first schema's)."""
    import json

    from inspect_ai.model import GenerateConfig, ResponseSchema
    from inspect_ai.util import JSONSchema

    def schema(field: str) -> ResponseSchema:
        return ResponseSchema(name="answer", json_schema=JSONSchema(
            type="object", properties={field: JSONSchema(type="string")}, required=[field]))

    store = tmp_path / "store"

    def evaluate(field: str):
        [log] = inspect_eval(make_task(n=2), model=MODEL, model_base_url=fake_server.base_url,
                             model_args={"store": str(store)}, epochs=2, display="none",
                             log_dir=str(tmp_path / "logs"),
                             **GenerateConfig(temperature=0.7, response_schema=schema(field)).model_dump(exclude_none=True))
        assert log.status == "success", log.error
        return log

    first = evaluate("answer")
    assert fake_server.request_count > 0
    assert all(r["response_format"]["type"] == "json_schema" for r in fake_server.requests)
    assert all(set(json.loads(text)) == {"answer"} for text in outputs(first).values())
    fake_server.reset_counters()
    assert outputs(evaluate("answer")) == outputs(first) and fake_server.request_count == 0
    other = evaluate("verdict")
    assert fake_server.samples_generated == 4
    assert all(set(json.loads(text)) == {"verdict"} for text in outputs(other).values())

@tool
def lookup():
    async def execute(query: str) -> str:
        """Look a word up.

        Args:
            query: The word to look up.
        """
        return f"definition of {query}"

    return execute


def test_a_tool_using_agent_replays_its_trajectory(fake_server, api_key_env, tmp_path):
    store = tmp_path / "store"
    solver = [use_tools([lookup()]), generate()]
    first = run(make_task(n=3, solver=solver), fake_server, store, tmp_path, epochs=2)
    trajectories = {(s.id, s.epoch): [(m.role, m.text, [c.arguments for c in getattr(m, "tool_calls", None) or []])
                                      for m in s.messages] for s in first.samples}
    assert all(any(role == "tool" for role, _, _ in t) for t in trajectories.values())
    assert fake_server.request_count > 0
    fake_server.reset_counters()
    again = run(make_task(n=3, solver=solver), fake_server, store, tmp_path, epochs=2)
    assert fake_server.request_count == 0
    assert {(s.id, s.epoch): [(m.role, m.text, [c.arguments for c in getattr(m, "tool_calls", None) or []])
                              for m in s.messages] for s in again.samples} == trajectories


def test_inspects_own_cache_is_refused(fake_server, api_key_env, tmp_path):
    [log] = inspect_eval(make_task(n=1, solver=[generate(cache=True)]), model=MODEL,
                         model_base_url=fake_server.base_url, model_args={"store": str(tmp_path / "store")},
                         display="none", log_dir=str(tmp_path / "logs"))
    assert log.status == "error"
    assert "cache is on for a cachesaver/ model" in log.error.message
    assert fake_server.request_count == 0


CLI_TASK = """\
from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.scorer import includes
from inspect_ai.solver import generate


@task
def qa():
    return Task(dataset=MemoryDataset([Sample(input=f"Question {i}?", target="sample 1", id=i) for i in range(5)]),
                solver=[generate()], scorer=includes())
"""


def _entry_point_dist(folder):
    """A dist-info declaring this repo's ``inspect_ai`` entry points exactly as pyproject.toml
    does, so the CLI finds the provider the way ``pip install`` makes it findable."""
    from pathlib import Path

    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    points = pyproject["project"]["entry-points"]["inspect_ai"]
    dist = folder / "cachesaver_entry_points_under_test-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cachesaver-entry-points-under-test\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text(
        "[inspect_ai]\n" + "".join(f"{name} = {value}\n" for name, value in points.items()))


def test_the_cli_finds_the_provider_through_the_entry_point(fake_server, api_key_env, tmp_path, monkeypatch):
    """docs/integrations/evals.md's ``inspect eval task.py --model cachesaver/openai/gpt-4o-mini
    -M store=./.cachesaver ...`` (README.md shows the same block), read from the page and run as
    written in bash (the page's
    OPENAI_BASE_URL pointing at this test's fake server) in a subprocess that never imports the
    adapter itself: Inspect finds it through the entry point. The same task file evaluated again
    (in-process, to save a second CLI start) makes 0 requests and gets the same outputs."""
    import os
    import subprocess
    from pathlib import Path

    from inspect_ai.log import read_eval_log

    [block] = [b for b in page_blocks("tests/evals/test_inspect.py") if b.code.startswith("inspect eval")]
    assert block.lang == "bash" and block.code.startswith("inspect eval task.py --model cachesaver/")
    root = Path(__file__).resolve().parents[2]
    (tmp_path / "task.py").write_text(CLI_TASK)
    _entry_point_dist(tmp_path / "site")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PYTEST_"))}
    env.update(OPENAI_API_KEY="sk-fake", OPENAI_BASE_URL=fake_server.base_url,
               PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(root), str(root / "core")]))
    result = subprocess.run(["bash", "-c", "set -e\n" + block.code], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    [path] = (tmp_path / "logs").glob("*.eval")
    first = read_eval_log(str(path))
    assert fake_server.samples_generated == 10  # 5 samples x --epochs 2
    assert len(set(outputs(first).values())) == 10
    fake_server.reset_counters()
    monkeypatch.chdir(tmp_path)
    again = run("task.py", fake_server, tmp_path / ".cachesaver", tmp_path, epochs=2)
    assert fake_server.request_count == 0
    assert outputs(again) == outputs(first)


def test_a_bundle_of_the_eval_reruns_it_offline_with_identical_scores(fake_server, api_key_env, tmp_path, monkeypatch):
    """Issue 23, item 4: the exact samples behind an eval's scores, published. The eval runs in a
    shared run (``-M run_id=paper-eval``); the page's ``cachesaver bundle create`` command, run as
    written, bundles that run; a copy of the bundle on "another machine" (another folder,
    read-only) answers the same eval again with sockets blocked: identical outputs and scores,
    zero calls."""
    import os
    import shutil
    import socket
    import stat
    import subprocess
    from pathlib import Path

    [command] = [b for b in page_blocks("tests/evals/test_inspect.py") if "bundle create" in b.code]
    [first] = inspect_eval(make_task(), model=MODEL, model_base_url=fake_server.base_url,
                           model_args={"store": str(tmp_path / ".cachesaver"), "run_id": "paper-eval"}, epochs=3,
                           temperature=0.7, display="none", log_dir=str(tmp_path / "logs"))
    assert first.status == "success" and fake_server.samples_generated == 15

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), str(root / "core")]))
    done = subprocess.run(["bash", "-c", "set -e\n" + command.code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    machine = tmp_path / "other-machine"
    machine.mkdir()
    shutil.copy(tmp_path / "eval.csbundle", machine / "eval.csbundle")
    os.chmod(machine / "eval.csbundle", stat.S_IRUSR)
    os.chmod(machine, stat.S_IRUSR | stat.S_IXUSR)

    def no_network(self, address):
        raise OSError(f"network blocked in this test: connect to {address!r}")

    fake_server.reset_counters()
    monkeypatch.setattr(socket.socket, "connect", no_network)
    try:
        [again] = inspect_eval(make_task(), model=MODEL, model_base_url=fake_server.base_url,
                               model_args={"store": str(machine / "eval.csbundle")}, epochs=3,
                               temperature=0.7, display="none", log_dir=str(tmp_path / "logs2"))
    finally:
        monkeypatch.undo()
        os.chmod(machine, stat.S_IRWXU)
    assert again.status == "success", again.error
    assert fake_server.request_count == 0
    assert outputs(again) == outputs(first) and scores(again) == scores(first)
    assert cached_flags(again) == [True] * 15
