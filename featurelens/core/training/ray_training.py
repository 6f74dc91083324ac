"""Data-parallel training on Ray: one actor per worker (a GPU each where the cluster has
GPUs), joined into one ``torch.distributed`` group whose address rank 0's actor picks.

Imported only for ``--executor ray``; a missing Ray or an unreachable cluster is one
sentence. Jobs travel to the actors as plain dicts and the weights come back as
safetensors bytes.
"""

from __future__ import annotations

from typing import Any

from featurelens.core.errors import FeaturelensError
from featurelens.core.ray.address import check_fits
from featurelens.core.ray.runtime import connect


class TrainWorker:
    """What each Ray actor runs (a plain class, so it is importable without Ray)."""

    def address(self) -> tuple[str, int]:
        """This node's IP and a free port: rank 0's actor hosts the group's rendezvous."""
        import ray

        from featurelens.core.training.worker import free_port

        return ray.util.get_node_ip_address(), free_port()

    def run(self, rank: int, world: int, init_method: str, job: dict[str, Any]) -> dict[str, Any] | None:
        from featurelens.core.training.worker import train_rank

        return train_rank(rank, world, init_method, job)


def run_on_ray(job: dict[str, Any], workers: int, address: str | None) -> dict[str, Any]:
    """Train with ``workers`` actors on the cluster at ``address`` (default: a local one)."""
    threads = int(job["threads"])
    started = connect(address, workers * threads, log_to_driver=bool(job["progress"]))
    import ray

    try:
        gpu = job["device"].startswith("cuda") or (
            job["device"] == "auto" and ray.cluster_resources().get("GPU", 0) >= 1)
        job = {**job, "device": "cuda" if gpu else "cpu"}
        check_fits(ray.cluster_resources(), workers, threads, 1 if gpu else 0)  # else they wait forever
        actor = ray.remote(num_cpus=threads, num_gpus=1 if gpu else 0, max_restarts=0)(TrainWorker)
        actors = [actor.remote() for _ in range(workers)]
        host, port = ray.get(actors[0].address.remote())
        init_method = f"tcp://{host}:{port}"
        runs = [a.run.remote(rank, workers, init_method, job) for rank, a in enumerate(actors)]
        try:
            results = ray.get(runs)
        except ray.exceptions.RayTaskError as error:
            cause = getattr(error, "cause", None)
            if isinstance(cause, FeaturelensError):
                raise FeaturelensError(str(cause.args[0]) if cause.args else str(cause)) from None
            raise FeaturelensError(
                f"A Ray training worker failed ({type(cause).__name__ if cause else 'error'}); run the same "
                "command again to resume from the last checkpoint.") from None
        except ray.exceptions.RayError as error:
            raise FeaturelensError(
                f"A Ray training worker was lost ({type(error).__name__}); run the same command again "
                "to resume from the last checkpoint.") from None
        return results[0]
    finally:
        if started:
            ray.shutdown()
