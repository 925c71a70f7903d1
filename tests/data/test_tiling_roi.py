"""Tiling, un-tiling, the ROI and the framing of frames into network inputs: exact, with real arrays."""

import numpy as np
import pytest

from diffusionad_edge.config import preset
from diffusionad_edge.data.framing import Preprocessing, parse_input_size, predict_frames
from diffusionad_edge.data.preprocess import to_chw_float
from diffusionad_edge.data.roi import Roi, parse_roi
from diffusionad_edge.data.tiling import TileGrid, tile_starts
from diffusionad_edge.errors import ConfigError, DataError


def _ramp(h, w):
    """A map whose every pixel differs: ramps along both axes (float32, exactly representable)."""
    return (np.arange(h, dtype=np.float32)[:, None] * 1000 + np.arange(w, dtype=np.float32)[None, :]) / 1024


def test_tile_starts_cover_the_axis_without_padding():
    assert tile_starts(256, 256, 0) == [0]
    assert tile_starts(512, 256, 0) == [0, 256]
    assert tile_starts(512, 256, 32) == [0, 224, 256]  # last tile flush with the end
    assert tile_starts(300, 100, 0) == [0, 100, 200]
    assert tile_starts(301, 100, 10) == [0, 90, 180, 201]
    for length, tile, overlap in [(960, 256, 32), (1000, 128, 0), (257, 256, 0), (777, 64, 63)]:
        starts = tile_starts(length, tile, overlap)
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s : s + tile] = True
        assert covered.all() and starts[-1] + tile == length
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("blend", ["mean", "max"])
@pytest.mark.parametrize("h, w, tile, overlap", [(256, 256, 256, 0), (512, 768, 256, 0), (512, 768, 256, 32),
                                                  (100, 230, 64, 16), (384, 960, 256, 32), (67, 129, 64, 63)])
def test_untiling_reproduces_constant_and_ramp_maps_exactly(h, w, tile, overlap, blend):
    grid = TileGrid(h, w, tile, overlap)
    for known in (np.full((h, w), 0.3, np.float32), _ramp(h, w)):
        tiles = grid.split(known)
        assert tiles.shape == (len(grid), tile, tile)
        merged = grid.merge(tiles, blend)
        assert merged.dtype == np.float32 and merged.shape == (h, w)
        assert np.array_equal(merged, known)


def test_blending_of_disagreeing_tiles_is_mean_or_max():
    grid = TileGrid(4, 6, 4, 2)  # tiles at x = 0 and 2: columns 2-3 are covered twice
    tiles = np.stack([np.full((4, 4), 1.0, np.float32), np.full((4, 4), 3.0, np.float32)])
    mean, mx = grid.merge(tiles, "mean"), grid.merge(tiles, "max")
    assert np.array_equal(mean[0], [1, 1, 2, 2, 3, 3]) and np.array_equal(mx[0], [1, 1, 3, 3, 3, 3])


def test_tiles_of_a_colour_image_and_bad_tilings():
    img = np.random.default_rng(0).integers(0, 255, (100, 150, 3), dtype=np.uint8)
    grid = TileGrid(100, 150, 64, 8)
    tiles = grid.split(img)
    for t, (y, x) in zip(tiles, grid.origins):
        assert np.array_equal(t, img[y : y + 64, x : x + 64])
    with pytest.raises(DataError, match="tile 256 is larger than the image"):
        TileGrid(200, 300, 256)
    with pytest.raises(ConfigError, match="tile-overlap"):
        tile_starts(300, 64, 64)
    with pytest.raises(ConfigError, match="blend"):
        grid.merge(tiles[..., 0].astype(np.float32), "median")


def test_roi_parse_crop_place_round_trip():
    roi = parse_roi("10, 20, 30, 40")
    assert roi == Roi(10, 20, 30, 40) and str(roi) == "10,20,30,40" and Roi.from_dict(roi.to_dict()) == roi
    frame = _ramp(100, 80)
    crop = roi.crop(frame)
    assert crop.shape == (40, 30) and np.array_equal(crop, frame[20:60, 10:40])
    placed = roi.place(crop, frame.shape)
    inside = np.zeros(frame.shape, bool)
    inside[20:60, 10:40] = True
    assert np.array_equal(placed[inside], frame[inside]) and not placed[~inside].any()
    Roi(0, 0, 80, 100).check((100, 80))  # the whole frame fits
    with pytest.raises(DataError, match=r"ROI x,y,w,h = 60,20,30,40 does not fit the 80x100 \(WxH\) frame"):
        Roi(60, 20, 30, 40).place(crop, (100, 80))
    for bad in ("1,2,3", "a,b,c,d", "1,2,0,4", "-1,0,5,5"):
        with pytest.raises(ConfigError):
            parse_roi(bad)


def test_input_sizes_and_divisibility():
    assert parse_input_size("256") == (256, 256) and parse_input_size("256x640") == (256, 640)
    with pytest.raises(ConfigError, match="HxW"):
        parse_input_size("256x")
    cfg = preset("edge").with_input((256, 640)).validate()
    assert cfg.input_hw == (256, 640) and cfg.arch_size == 256 and cfg.image_width == 640
    with pytest.raises(ConfigError, match=r"input size 250x640 \(HxW\): both sides must be multiples of 16 for preset 'edge'"):
        preset("edge").with_input((250, 640)).validate()
    with pytest.raises(ConfigError, match=r"input size 272x640 \(HxW\): both sides must be multiples of 32 for preset 'edge-v2'"):
        preset("edge-v2").with_input((272, 640)).validate()
    assert preset("edge").with_input((256, 256)).image_width is None  # square stays square


def _identity_predict(batch):
    """A stand-in network: the map is the input's first channel, the score its maximum."""
    maps = batch[:, 0]
    return maps, maps.reshape(len(maps), -1).max(axis=1)


def test_tiled_frame_round_trips_through_inputs_and_maps():
    frame = np.random.default_rng(1).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    prep = Preprocessing(64, 64, roi=Roi(10, 5, 150, 100), tile=64, overlap=16, top_k=10)
    batch, layout = prep.inputs(frame)
    assert batch.shape == (len(layout.grid), 3, 64, 64) and layout.region_hw == (100, 150)
    region = prep.region_map(_identity_predict(batch)[0], layout)
    assert np.array_equal(region, to_chw_float(np.ascontiguousarray(frame[5:105, 10:160]))[0])
    full = prep.frame_map(region, layout)
    assert full.shape == (120, 200) and np.array_equal(full[5:105, 10:160], region) and full[:5].max() == 0
    maps, scores = predict_frames(prep, _identity_predict, [frame, frame])
    top = np.sort(region.ravel())[-10:].mean()
    assert np.allclose(scores, top) and np.array_equal(maps[0], region)
    assert Preprocessing.from_dict(prep.to_dict()) == prep


def test_resized_and_roi_frames():
    frame = np.random.default_rng(2).integers(0, 255, (90, 300, 3), dtype=np.uint8)
    plain = Preprocessing.plain((32, 96))
    batch, layout = plain.inputs(frame)
    assert batch.shape == (1, 3, 32, 96) and layout.grid is None
    maps, scores = predict_frames(plain, _identity_predict, [frame])
    assert maps[0].shape == (90, 300) and scores[0] == pytest.approx(batch[0, 0].max())
    with pytest.raises(DataError, match="does not fit"):
        plain.with_roi(Roi(0, 0, 400, 90)).inputs(frame)
    with pytest.raises(DataError, match="tile 128 is larger than the image"):
        Preprocessing(128, 128, tile=128).inputs(frame)
    with pytest.raises(ConfigError, match="tiled model takes tile x tile"):
        Preprocessing(64, 128, tile=64)
