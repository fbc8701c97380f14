"""distilabel against the peers server: a pipeline of N rows into
TextGeneration with OpenAILLM (non-streaming, as distilabel sends), batches
of CONCURRENCY rows (each batch's requests in flight together), no cache.

    python distilabel_client.py BASE_URL N CONCURRENCY
"""
import sys

from distilabel.models import OpenAILLM
from distilabel.pipeline import Pipeline
from distilabel.steps import LoadDataFromDicts
from distilabel.steps.tasks import TextGeneration


def main(base_url, n, concurrency):
    with Pipeline(name="peers") as pipeline:
        load = LoadDataFromDicts(
            data=[{"instruction": f"Write 1 new question, number {i}."} for i in range(n)],
            batch_size=concurrency,
        )
        gen = TextGeneration(
            llm=OpenAILLM(model="test-model", base_url=base_url, api_key="sk-peers", max_retries=0),
            input_batch_size=concurrency,
        )
        load >> gen
    distiset = pipeline.run(use_cache=False)
    rows = distiset["default"]["train"]
    assert len(rows) == n and all(rows["generation"]), "a missing or empty reply"
    print(f"{len(rows)} replies")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
