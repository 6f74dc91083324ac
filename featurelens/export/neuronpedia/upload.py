"""Payloads for neuronpedia.org's ``POST /api/feature/upload-batch``, and sending them.

That route (``apps/webapp/app/api/feature/upload-batch/route.tsx``) is how a third party
adds features to a source set it created on neuronpedia.org: a JSON body
``{modelId, source, features[]}`` with at most 128 features, each with ``index``,
``density``, ``topLogits``/``bottomLogits`` (at most 20 ``{token, value}``),
``explanations`` (``text`` of 1-512 characters, optional ``methodName`` and
``modelName``, which must name an explanation type and model the site knows) and at
least one activation (``tokens`` and ``values`` of 1-1,024 entries, equal lengths,
optional ``quantileMin``/``quantileMax``/``quantileFraction``, the bin fields of
:func:`featurelens.export.neuronpedia.rows.quantile_intervals`). The site embeds the
explanations itself. The key travels in the ``x-api-key`` header and is read from
``NEURONPEDIA_API_KEY`` only.

Each payload is a file ``<output>/<modelId>/<sourceId>/upload-NNNNN.json``. The route
has no ids to de-duplicate explanations, so sending records the SHA-256 of every accepted
payload in ``<output>.sent`` (beside the folder, so a re-export keeps it) and a resumed
send skips those: nothing is sent twice, and a payload whose content changed is new.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from featurelens.browser.queries import BrowserData
from featurelens.core.errors import FeaturelensError
from featurelens.core.progress import progress
from featurelens.core.redaction import redact
from featurelens.export.neuronpedia import json_lines as npjson
from featurelens.export.neuronpedia import rows
from featurelens.export.staging import Staging

#: Most features one request may carry (the route's schema).
MAX_FEATURES = 128
MAX_TEXT = 512
MAX_TOKENS = 1024
MAX_LOGITS = 20
ROUTE = "/api/feature/upload-batch"
KEY_ENV = "NEURONPEDIA_API_KEY"
KEY_HEADER = "x-api-key"


def feature_payload(src: rows.Source, record: Any) -> dict[str, Any] | None:
    """One feature as the route takes it; None for a feature without examples (the route
    needs at least one activation)."""
    stats = record.stats
    feature = int(stats["feature"])
    activations = []
    for a in rows.activation_rows(src, feature, record.examples, stats):
        tokens, values = a["tokens"][:MAX_TOKENS], a["values"][:MAX_TOKENS]
        if not tokens:
            continue
        item: dict[str, Any] = {"tokens": tokens, "values": values}
        if a["binContains"] >= 0:  # quantile windows; top windows carry no bin
            item.update(quantileMin=a["binMin"], quantileMax=a["binMax"],
                        quantileFraction=min(1.0, max(0.0, a["binContains"])))
        activations.append(item)
    if not activations:
        return None
    explanations = []
    for e in record.explanations:
        text = " ".join(str(e["text"]).split())[:MAX_TEXT]
        if not text:
            continue
        kind = rows.EXPLANATION_TYPES.get(e["explainer"])  # only types neuronpedia.org has
        explanations.append({"text": text, "methodName": kind,
                             "modelName": rows.model_name(e["llm"], e["explainer"])})
    density = stats.get("density")
    return {
        "index": feature,
        **({"density": min(1.0, max(0.0, npjson.finite(density)))} if density is not None else {}),
        "topLogits": [{"token": t, "value": npjson.finite(v)} for t, v in
                      zip(stats.get("top_logits") or [], stats.get("top_logit_values") or [], strict=False)][:MAX_LOGITS],
        "bottomLogits": [{"token": t, "value": npjson.finite(v)} for t, v in
                         zip(stats.get("bottom_logits") or [], stats.get("bottom_logit_values") or [],
                             strict=False)][:MAX_LOGITS],
        "explanations": explanations,
        "activations": activations,
    }


def write(data: BrowserData, staging: Staging, keys: list[tuple[str, int]], visibility: str = "PUBLIC") -> int:
    """Write the payloads of every feature in ``keys``; returns how many files."""
    by_dictionary: dict[str, list[int]] = {}
    for dictionary_id, feature in keys:
        by_dictionary.setdefault(dictionary_id, []).append(feature)
    files = 0
    with progress(len(keys), desc="export neuronpedia-upload", unit="feature") as bar:
        for dictionary_id, features in by_dictionary.items():
            dictionary = data._dicts("SELECT * FROM dictionaries WHERE dictionary_id = ?", [dictionary_id])[0]
            src = rows.Source.of(dictionary, visibility=visibility)
            for n, start in enumerate(range(0, len(features), MAX_FEATURES)):
                chunk = features[start:start + MAX_FEATURES]
                name = f"{src.model_id}/{src.source_id}/upload-{n:05d}.json"
                if not staging.done(name):
                    items = [p for r in data.feature_batch(dictionary_id, chunk, max_quantile=1_000_000)
                             if (p := feature_payload(src, r)) is not None]
                    if items:
                        body = {"modelId": src.model_id, "source": src.source_id, "features": items}
                        staging.write_bytes(name, json.dumps(body, ensure_ascii=False, allow_nan=False).encode())
                        files += 1
                else:
                    files += 1
                bar.update(len(chunk))
    return files


def payloads(folder: Path) -> list[Path]:
    """The payload files of an export folder, in the order they are sent."""
    return sorted(folder.glob("*/*/upload-*.json"))


def describe(folder: Path, url: str) -> str:
    """What a send would do, one line per payload (the dry run); never the key."""
    sent = _sent(folder)
    lines = [f"Would POST to {url.rstrip('/')}{ROUTE} with the key from ${KEY_ENV} in the {KEY_HEADER} header:"]
    for path in payloads(folder):
        body = json.loads(path.read_text(encoding="utf-8"))
        n_expl = sum(len(f["explanations"]) for f in body["features"])
        n_acts = sum(len(f["activations"]) for f in body["features"])
        mark = "already sent, skipped" if _digest(path.read_bytes()) in sent else "to send"
        lines.append(f"  {path.relative_to(folder).as_posix()}: modelId={body['modelId']} source={body['source']} "
                     f"{len(body['features'])} features, {n_expl} explanations, {n_acts} activations, "
                     f"{path.stat().st_size:,} bytes ({mark})")
    return "\n".join(lines)


def sent_log(folder: Path) -> Path:
    """Where the digests of accepted payloads are kept: beside the export folder."""
    folder = folder.resolve()
    return folder.with_name(folder.name + ".sent")


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _sent(folder: Path) -> set[str]:
    path = sent_log(folder)
    return {line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()} \
        if path.is_file() else set()


def send(folder: Path, url: str, timeout: float = 120.0) -> tuple[int, int]:
    """POST every payload not yet sent; returns (sent now, skipped as sent before).

    The key comes from ``NEURONPEDIA_API_KEY`` only; a refusal stops at that payload
    with the server's message (key redacted), and the same command resumes after it."""
    key = os.environ.get(KEY_ENV)
    if not key:
        raise FeaturelensError(f"Sending to Neuronpedia needs {KEY_ENV} in the environment (your API key is under "
                               "Settings on neuronpedia.org); set it, or use --dry-run to see what would be sent.")
    target = url.rstrip("/") + ROUTE
    done = _sent(folder)
    files = payloads(folder)
    sent = 0
    with progress(len(files), desc="send to neuronpedia", unit="request") as bar:
        for path in files:
            name = path.relative_to(folder).as_posix()
            body = path.read_bytes()
            if _digest(body) not in done:
                _post(target, body, key, timeout, name)
                with sent_log(folder).open("a", encoding="utf-8") as handle:
                    handle.write(f"{_digest(body)} {name}\n")
                sent += 1
            bar.update(1)
    return sent, len(files) - sent


def _post(target: str, body: bytes, key: str, timeout: float, name: str) -> None:
    request = urllib.request.Request(target, data=body, method="POST",
                                     headers={"Content-Type": "application/json", KEY_HEADER: key})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as error:
        text = error.read().decode("utf-8", "replace")
        try:
            text = str(json.loads(text).get("error") or text)
        except (ValueError, AttributeError):
            pass
        message = redact(" ".join(text.split()), [key])[:300]
        raise FeaturelensError(f"Neuronpedia refused {name} (HTTP {error.code}: {message}); fix what it names "
                               "and run the same command again: payloads already accepted are not sent twice.") from None
    except (urllib.error.URLError, OSError) as error:
        reason = redact(str(getattr(error, "reason", error)), [key])
        raise FeaturelensError(f"Could not reach {target} ({reason}); check the address and network, then run "
                               "the same command again to resume.") from None
