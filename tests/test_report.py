"""skengine/training/report.py: the files a run writes beside its checkpoint."""
import csv

from skengine.training import report


def test_metrics_csv_takes_every_column_even_one_a_resumed_run_adds(tmp_path):
    """A checkpoint from before a column existed resumes into a history whose rows differ in keys."""
    path = str(tmp_path / "metrics.csv")
    report.write_metrics(path, [{"epoch": 1, "test_acc": 0.5}, {"epoch": 2, "test_acc": 0.6, "test_acc_tta": 0.7}])
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert rows == [{"epoch": "1", "test_acc": "0.5", "test_acc_tta": ""},
                    {"epoch": "2", "test_acc": "0.6", "test_acc_tta": "0.7"}]
