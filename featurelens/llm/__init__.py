"""The LLM layer shared by explainers and scorers: providers, the request engine
(concurrency, rate limits, retries, response cache, durable writes), prices, plans
and provider batch APIs."""
