"""skengine.summary: per-layer output shapes, parameters and multiply-adds, against counts by hand."""
import skengine as sk
import skengine.nn as nn


def test_summary_counts_by_hand():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, padding=1, groups=4, bias=False), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(8, 5))
    net.train()
    s = sk.summary(net, (3, 10, 10), batch_size=2)
    # conv1: 2 images * 8 * 5 * 5 outputs * 3 * 9; conv2: 2 * 8 * 25 * (8 / 4) * 9; fc: 2 * 5 * 8
    assert [layer.macs for layer in s.layers] == [10800, 0, 0, 7200, 0, 0, 80]
    assert s.total_macs == 18080
    assert s.total_params == (8 * 27 + 8) + 16 + 8 * 2 * 9 + (5 * 8 + 5)
    assert [layer.output_shape for layer in s.layers][:4] == [[2, 8, 5, 5]] * 4
    assert s.layers[-1].output_shape == [2, 5]
    assert net.training and all(m.training for m in net.modules())  # mode restored
    text = str(s)
    assert "Total params: 429" in text and "18,080" in text and "Conv2d" in text
