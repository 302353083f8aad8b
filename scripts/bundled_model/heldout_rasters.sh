#!/usr/bin/env bash
# Run a model the way users do (tile-infer on a georeferenced raster at its own resolution,
# GeoPackage out) on held-out areas of four kinds, score the polygons against the reference
# footprints and draw a preview of each: the gallery and raster rows of docs/bundled-model.md.
#
#   bash scripts/bundled_model/heldout_rasters.sh [MODEL] [OUT]
#
# MODEL defaults to the bundled model, OUT to out/heldout-rasters. Needs the output of
# prepare_data.py in out/bundled-data and ../shared/data (the Banepa tile and its labels).
set -euo pipefail
cd "$(dirname "$0")/../.."
export TF_CPP_MIN_LOG_LEVEL=2
MODEL=${1:-mapseg_core/models/bundled/buildings-b0.keras}
OUT=${2:-out/heldout-rasters}
SHARED=${SHARED:-../shared}
H=out/bundled-data/heldout-rasters
BANEPA=$SHARED/data/hotosm-fair-banepa
mkdir -p "$OUT"

# name | raster | reference footprints | tile-infer options | kind
# (Massachusetts declares nodata=255, also the colour of white roofs: --nodata none)
AREAS=(
  "tanzania|$H/tanzania-right.tif|$H/tanzania.geojson||drone, 7.7 cm (Zanzibar)"
  "inria|$H/inria-bottomright.tif|||aerial, 0.3 m (Austin)"
  "massachusetts|$H/massachusetts.tif|$H/massachusetts.gpkg|--nodata none|aerial, 1 m (Boston; evaluation only)"
  "atlanta|$H/atlanta.tif|$H/atlanta.geojson||satellite, 0.5 m (Atlanta)"
  "banepa|$BANEPA/images/OAM-386695-220244-19.tif|$BANEPA/labels_osm_4326.geojson||dense informal, 0.13 m (Banepa)"
)
for area in "${AREAS[@]}"; do
  IFS='|' read -r name raster reference options kind <<<"$area"
  # shellcheck disable=SC2086  # options are words
  .venv/bin/mapseg tile-infer "$raster" -o "$OUT/$name.gpkg" --model "$MODEL" --overwrite -q \
    $options
  .venv/bin/mapseg preview "$raster" "$OUT/$name.gpkg" -o "$OUT/$name.png" --max-size 800 \
    --overwrite -q
  if [[ -n "$reference" ]]; then
    aoi=$(.venv/bin/python -c "import rasterio,sys; print(','.join(map(str, rasterio.open(sys.argv[1]).bounds)))" "$raster")
    .venv/bin/mapseg evaluate-vectors "$OUT/$name.gpkg" "$reference" --aoi "$aoi" --json \
      >"$OUT/$name.json"
  fi
  echo "$name ($kind): $OUT/$name.gpkg $OUT/$name.png"
done
