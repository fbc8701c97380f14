"""bespokelabs-curator against the peers server: N chat completions through
its OpenAI backend, CONCURRENCY requests in flight, no rate limit, no cache
(CURATOR_DISABLE_CACHE is set by run.sh).

    python curator_client.py BASE_URL N CONCURRENCY
"""
import sys

from bespokelabs import curator


def main(base_url, n, concurrency):
    llm = curator.LLM(
        model_name="test-model",
        backend="openai",
        backend_params={
            "base_url": base_url,
            "api_key": "sk-peers",
            "max_concurrent_requests": concurrency,
            "max_requests_per_minute": 10_000_000,
            "max_tokens_per_minute": 10_000_000_000,
            "max_retries": 0,
        },
    )
    out = llm([f"Write 1 new question, number {i}." for i in range(n)])
    texts = out.dataset["response"]
    assert len(texts) == n and all(texts), "a missing or empty reply"
    print(f"{len(texts)} replies")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
