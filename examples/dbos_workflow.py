"""A durable DBOS workflow whose LLM steps go through Sluicegate and never pay twice.

Three model calls (an outline, a streamed draft, a title), each a DBOS step sending an idempotency key
derived from the workflow id and the step name. DBOS checkpoints each step's result in PostgreSQL; if the
process dies after the provider answered but before the checkpoint, DBOS runs the step again on recovery,
and Sluicegate answers it from its idempotency store: the same bytes, no second provider call, no second
charge.

    pip install 'sluicegate[workflows]'           # dbos; server mode also needs `pip install openai`
    python examples/dbos_workflow.py --mode library
    python examples/dbos_workflow.py --mode server --gateway-url http://127.0.0.1:4000/v1

Without a provider key the library uses the offline demo provider (model `demo`). To watch a recovery:

    python examples/dbos_workflow.py --workflow-id demo-1 --crash-after outline   # dies with SIGKILL
    python examples/dbos_workflow.py --workflow-id demo-1                          # DBOS recovers demo-1

DBOS keeps its state in the PostgreSQL database of `--database-url` (created if missing); see docs/workflows.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import uuid
from collections.abc import Callable
from typing import Any

from dbos import DBOS, DBOSConfig, SetWorkflowID

import sluicegate

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/sluicegate_dbos_example"


class Settings:
    """What the steps need at run time; module state because DBOS re-runs steps by name on recovery."""

    mode = "library"
    model = "demo"
    gateway_url = "http://127.0.0.1:4000/v1"
    api_key = "unused"
    crash_after: str | None = None
    verbose = False


# --- the model call, in either mode -------------------------------------------------------------


def chat(step: str, prompt: str, *, stream: bool = False) -> dict[str, Any]:
    """One model call for `step` of the running workflow, keyed so that a re-run replays it."""
    key = sluicegate.step_key(_workflow_id(), step)
    messages = [{"role": "user", "content": prompt}]
    try:
        if Settings.mode == "library":
            answer = _library_call(messages, key, stream)
        else:
            answer = _server_call(messages, key, stream)
    except Exception as error:
        _after_call(step, {"step": step, "error": str(error)})
        raise
    _after_call(step, {"step": step, **answer})
    return answer


def _library_call(messages: list[dict[str, Any]], key: str, stream: bool) -> dict[str, Any]:
    if not stream:
        return {"answer": sluicegate.completion(model=Settings.model, messages=messages, idempotency_key=key)}
    chunks = sluicegate.completion(model=Settings.model, messages=messages, stream=True, idempotency_key=key)
    return {"chunks": list(chunks)}


def _server_call(messages: list[dict[str, Any]], key: str, stream: bool) -> dict[str, Any]:
    import openai  # only server mode needs the SDK

    client = openai.OpenAI(base_url=Settings.gateway_url, api_key=Settings.api_key, max_retries=0)
    sent: Any = messages  # plain dicts in the OpenAI wire format; the SDK's TypedDicts describe the same shape
    headers = {"Idempotency-Key": key}
    if not stream:
        answer = client.chat.completions.create(model=Settings.model, messages=sent, extra_headers=headers)
        return {"answer": answer.model_dump(mode="json", exclude_unset=True)}
    chunks = client.chat.completions.create(model=Settings.model, messages=sent, stream=True, extra_headers=headers)
    return {"chunks": [chunk.model_dump(mode="json", exclude_unset=True) for chunk in chunks]}


def _after_call(step: str, outcome: dict[str, Any]) -> None:
    if Settings.verbose:
        print(json.dumps(outcome), flush=True)
    if Settings.crash_after == step:
        # The provider answered, DBOS has not checkpointed the step yet: the worst moment to die.
        os.kill(os.getpid(), signal.SIGKILL)


def _workflow_id() -> str:
    workflow_id = DBOS.workflow_id
    if workflow_id is None:
        raise RuntimeError("chat() must run inside a DBOS workflow")
    return workflow_id


def text_of(answer: dict[str, Any]) -> str:
    """The assistant's text, from a JSON answer or from a list of stream chunks."""
    if "answer" in answer:
        return str(answer["answer"]["choices"][0]["message"]["content"] or "")
    return "".join(
        (choice.get("delta") or {}).get("content") or "" for chunk in answer["chunks"] for choice in chunk["choices"]
    )


# --- the workflow -------------------------------------------------------------------------------


@DBOS.step(name="outline")
def outline(topic: str) -> dict[str, Any]:
    return chat("outline", f"Write a three-point outline for a short article about {topic}.")


@DBOS.step(name="draft")
def draft(outline_text: str) -> dict[str, Any]:
    return chat("draft", f"Write one paragraph following this outline:\n{outline_text}", stream=True)


@DBOS.step(name="title")
def title(draft_text: str) -> dict[str, Any]:
    return chat("title", f"Suggest a title for this paragraph:\n{draft_text}")


@DBOS.workflow(name="sluicegate_example_article")
def article(topic: str) -> dict[str, Any]:
    planned = outline(topic)
    drafted = draft(text_of(planned))
    titled = title(text_of(drafted))
    return {"outline": planned, "draft": drafted, "title": titled}


# --- running it ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mode", choices=["library", "server"], default="library")
    parser.add_argument("--config", help="library mode: a gateway YAML (default: $SLUICEGATE_CONFIG, else env keys)")
    parser.add_argument("--gateway-url", default=os.environ.get("SLUICEGATE_URL", Settings.gateway_url))
    parser.add_argument("--api-key", default=os.environ.get("SLUICEGATE_API_KEY", Settings.api_key))
    parser.add_argument("--model", default="demo", help="the gateway alias or provider/model (default: demo)")
    parser.add_argument("--topic", default="durable workflows")
    parser.add_argument("--workflow-id", help="reuse an id to recover or replay a run (default: a new one)")
    parser.add_argument("--database-url", default=os.environ.get("DBOS_SYSTEM_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--schema", default="dbos", help="the schema of DBOS's system tables")
    parser.add_argument("--crash-after", choices=["outline", "draft", "title"], help="SIGKILL after this call")
    parser.add_argument("--verbose", action="store_true", help="print each step's answer as a JSON line")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Launch DBOS (recovering this process's pending workflows), run or await one workflow, shut down."""
    Settings.mode, Settings.model, Settings.crash_after = args.mode, args.model, args.crash_after
    Settings.gateway_url, Settings.api_key, Settings.verbose = args.gateway_url, args.api_key, args.verbose
    config: DBOSConfig = {
        "name": "sluicegate-example",
        "system_database_url": args.database_url,
        "dbos_system_schema": args.schema,
        # a fixed version: recovery only picks up workflows of the same application version
        "application_version": "sluicegate-example-1",
        "log_level": "WARNING",
    }
    DBOS(config=config)
    try:
        DBOS.launch()  # finds this executor's PENDING workflows and resumes them in the background
        workflow_id = args.workflow_id or f"article-{uuid.uuid4().hex}"
        status = DBOS.get_workflow_status(workflow_id)
        if status is not None:
            # Started before (and maybe being recovered right now): wait for it rather than start it twice.
            return dict(DBOS.retrieve_workflow(workflow_id).get_result())
        with SetWorkflowID(workflow_id):
            return DBOS.start_workflow(article, args.topic).get_result()
    finally:
        DBOS.destroy()


def main(argv: list[str] | None = None, prepare: Callable[[sluicegate.Gateway], None] | None = None) -> None:
    args = parse_args(argv)
    if args.mode == "library":
        gateway = sluicegate.configure(args.config)
        if prepare is not None:
            prepare(gateway)
    result = run(args)
    print(json.dumps({"title": text_of(result["title"]), "draft": text_of(result["draft"])}, indent=2))


if __name__ == "__main__":
    main()
