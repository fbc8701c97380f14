"""openai-python AsyncOpenAI against the peers server: N chat completions,
CONCURRENCY in flight (an asyncio.Semaphore), each reply read to the end.

    python openai_client.py BASE_URL N CONCURRENCY stream|plain
"""
import asyncio
import sys

from openai import AsyncOpenAI


async def main(base_url, n, concurrency, stream):
    client = AsyncOpenAI(base_url=base_url, api_key="sk-peers", max_retries=0)
    sem = asyncio.Semaphore(concurrency)

    async def one(i):
        messages = [{"role": "user", "content": f"Write 1 new question, number {i}."}]
        async with sem:
            if stream:
                text = []
                s = await client.chat.completions.create(
                    model="test-model", messages=messages, stream=True
                )
                async for chunk in s:
                    if chunk.choices and chunk.choices[0].delta.content:
                        text.append(chunk.choices[0].delta.content)
                return "".join(text)
            r = await client.chat.completions.create(model="test-model", messages=messages)
            return r.choices[0].message.content

    texts = await asyncio.gather(*(one(i) for i in range(n)))
    assert all(t for t in texts), "an empty reply"
    print(f"{len(texts)} replies")


if __name__ == "__main__":
    url, n, c, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    asyncio.run(main(url, n, c, mode == "stream"))
