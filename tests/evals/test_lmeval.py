"""lm-evaluation-harness on CacheSaver (issue 23, item 2): a real lm-eval generation task (a YAML
over a local JSON file) with ``repeats: 4``, real HTTP through litellm to the local fake server."""
from __future__ import annotations

import json

import pytest

lm_eval = pytest.importorskip("lm_eval")
from lm_eval.tasks import TaskManager  # noqa: E402

import cachesaver_lmeval  # noqa: E402,F401  (registers --model cachesaver)
from cachesaver.errors import InvalidRequestError  # noqa: E402

DOCS = [{"question": f"What comes after {i}?", "answer": "sample 1"} for i in range(3)]
TASK_YAML = """\
task: cs_repeats
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
repeats: 4
generation_kwargs:
  until: ["\\n\\n"]
  temperature: 0.7
  do_sample: true
  max_gen_toks: 32
filter_list:
  - name: all
    filter:
      - function: take_first_k
        k: 4
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


@pytest.fixture
def task_dir(tmp_path):
    data = tmp_path / "docs.json"
    data.write_text("\n".join(json.dumps(d) for d in DOCS))
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "cs_repeats.yaml").write_text(TASK_YAML.format(data=data))
    return folder


def evaluate(task_dir, server, store):
    return lm_eval.simple_evaluate(
        model="cachesaver",
        model_args=f"model=openai/gpt-4o-mini,store={store},base_url={server.base_url}",
        tasks=["cs_repeats"], task_manager=TaskManager(include_path=str(task_dir), include_defaults=False),
        apply_chat_template=True, log_samples=True,
    )


def generations(results) -> dict:
    return {s["doc_id"]: s["resps"][0] for s in results["samples"]["cs_repeats"]}


def test_repeats_are_fresh_and_a_rerun_makes_no_request(fake_server, api_key_env, task_dir, tmp_path):
    store = tmp_path / "store"
    first = evaluate(task_dir, fake_server, store)
    gens = generations(first)
    assert sorted(gens) == [0, 1, 2]
    assert all(len(g) == 4 and len(set(g)) == 4 for g in gens.values()), gens
    assert fake_server.samples_generated == 12
    # lm-eval sends seed=1234 with every request unless told otherwise; with it a provider that
    # honours seeds (OpenAI's best effort) answers the 4 repeats alike. The fake server ignores
    # seeds, so what is checked is that none is sent.
    assert fake_server.requests and not any("seed" in r for r in fake_server.requests)

    fake_server.reset_counters()
    again = evaluate(task_dir, fake_server, store)
    assert fake_server.request_count == 0
    assert generations(again) == gens
    assert again["results"] == first["results"]


def test_the_pages_cli_and_python_snippets_run_as_written(fake_server, api_key_env, tmp_path, monkeypatch, capsys):
    """docs/integrations/evals.md's lm-eval blocks (README.md shows the shell one), read from the
    page and run as written on the
    task they name (``my_tasks/my_task.yaml``, written here: 3 docs, ``repeats: 4``), with the
    page's OPENAI_BASE_URL pointing at this test's fake server: the shell command (lm-eval's CLI
    with the type registered) generates the 12 samples; the Python snippet, the same evaluation
    again, makes 0 requests."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from _evals_page import page_blocks

    cli, snippet = page_blocks("tests/evals/test_lmeval.py")
    assert cli.lang == "bash" and snippet.lang == "python"
    data = tmp_path / "docs.json"
    data.write_text("\n".join(json.dumps(d) for d in DOCS))
    (tmp_path / "my_tasks").mkdir()
    (tmp_path / "my_tasks" / "my_task.yaml").write_text(
        TASK_YAML.format(data=data).replace("task: cs_repeats", "task: my_task"))
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PYTEST_"))}
    env.update(OPENAI_API_KEY="sk-fake", OPENAI_BASE_URL=fake_server.base_url,
               PYTHONPATH=os.pathsep.join([str(root), str(root / "core")]))
    done = subprocess.run(["bash", "-c", "set -e\n" + cli.code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "my_task" in done.stdout and "exact_match" in done.stdout
    assert fake_server.samples_generated == 12 and fake_server.request_count == 12

    fake_server.reset_counters()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_server.base_url)
    monkeypatch.setattr(sys, "argv", ["snippet"])
    # The snippet's TaskManager indexes only its include path: indexing lm-eval's ~15,000
    # built-in task configs takes seconds, and the CLI run above did it, with the same include
    # path, for the same task. The snippet still makes its TaskManager as written (checked).
    made: list = []

    class IncludePathOnly(lm_eval.tasks.TaskManager):
        def __init__(self, *args, **kwargs):
            made.append((args, dict(kwargs)))
            super().__init__(*args, **{**kwargs, "include_defaults": False})

    monkeypatch.setattr(lm_eval.tasks, "TaskManager", IncludePathOnly)
    exec(compile(snippet.code, snippet.where, "exec"), {"__name__": "__main__"})
    assert made == [((), {"include_path": "./my_tasks"})]
    assert fake_server.request_count == 0
    assert "exact_match" in capsys.readouterr().out


MC_YAML = """\
task: cs_choice
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: ["sample 1", "sample 2"]
doc_to_target: 0
metric_list:
  - metric: acc
"""


def test_a_loglikelihood_task_fails_naming_what_is_supported(fake_server, api_key_env, tmp_path):
    """A multiple-choice task (log-likelihood requests) through lm-eval's own evaluate: the
    error names what the model type serves and what to use instead; no request is sent."""
    data = tmp_path / "docs.json"
    data.write_text("\n".join(json.dumps(d) for d in DOCS))
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "cs_choice.yaml").write_text(MC_YAML.format(data=data))
    with pytest.raises(InvalidRequestError, match="generate_until only.*loglikelihood.*local model type"):
        lm_eval.simple_evaluate(
            model="cachesaver",
            model_args=f"model=openai/gpt-4o-mini,store={tmp_path / 'store'},base_url={fake_server.base_url}",
            tasks=["cs_choice"], task_manager=TaskManager(include_path=str(folder), include_defaults=False))
    assert fake_server.request_count == 0


def test_a_seed_given_in_the_model_args_is_sent(tmp_path):
    """The user's own ``seed=`` model arg still reaches the payload (only lm-eval's default is dropped)."""
    given = cachesaver_lmeval.CacheSaverChatLM(model="openai/gpt-4o-mini", store=str(tmp_path / "store"), seed="7")
    default = cachesaver_lmeval.CacheSaverChatLM(model="openai/gpt-4o-mini", store=str(tmp_path / "store"))
    messages = [{"role": "user", "content": "Hi"}]
    assert given._create_payload(messages, generate=True, gen_kwargs={}, seed=given._seed)["seed"] == 7
    assert default._seed is None
