"""The API benchmark's ceiling: a bare FastAPI app answering the stats route with the same
JSON, held in memory (BENCH_ANSWER names the file with the bytes)."""

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response

ANSWER = Path(os.environ["BENCH_ANSWER"]).read_bytes()
app = FastAPI()


@app.get("/customers/{customer_id}/stats")
async def stats(customer_id: str, from_date: str | None = None, to_date: str | None = None):
    return Response(ANSWER, media_type="application/json")
