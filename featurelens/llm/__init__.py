"""The LLM layer shared by explainers and scorers: providers, the request engine
(concurrency, rate limits, retries, response cache, durable writes), prices, plans,
the labeling stage explain and score share (:mod:`.stage`) and provider batch APIs."""
