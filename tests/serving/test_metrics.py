"""The metrics observe through callbacks and read functions: no service is needed to drive them."""

from prometheus_client import generate_latest

from pneumonia_zoo.serving.metrics import ServiceMetrics


def _text(metrics: ServiceMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_predictions_and_batches_are_counted_from_the_callbacks() -> None:
    metrics = ServiceMetrics()
    metrics.observe_prediction("3", "PNEUMONIA", True)
    metrics.observe_prediction("3", "PNEUMONIA", False)
    metrics.observe_prediction("3", "NORMAL", False)
    metrics.observe_batch(rows=4, seconds=0.02, waits=[0.001, 0.003])
    text = _text(metrics)
    assert 'pneumonia_zoo_predictions_total{label="PNEUMONIA",version="3"} 2.0' in text
    assert 'pneumonia_zoo_predictions_total{label="NORMAL",version="3"} 1.0' in text
    assert 'pneumonia_zoo_out_of_population_total{version="3"} 1.0' in text
    assert "pneumonia_zoo_inference_batch_size_sum 4.0" in text
    assert "pneumonia_zoo_queue_wait_seconds_count 2.0" in text


def test_gauges_read_the_functions_they_are_given_when_scraped() -> None:
    metrics = ServiceMetrics()
    state = {"depth": 2, "held": 1024, "waiting": 1}
    metrics.watch_queue(lambda: state["depth"])
    metrics.watch_budget("uploads", lambda: state["held"], lambda: state["waiting"])
    assert "pneumonia_zoo_queue_depth 2.0" in _text(metrics)
    state |= {"depth": 5, "held": 0}  # read at scrape time, not when watched
    text = _text(metrics)
    assert "pneumonia_zoo_queue_depth 5.0" in text
    assert 'pneumonia_zoo_budget_bytes_in_use{budget="uploads"} 0.0' in text
    assert 'pneumonia_zoo_budget_waiting_requests{budget="uploads"} 1.0' in text
