#!/usr/bin/env bash
# Back up cxdesk: the PostgreSQL database (pg_dump custom format) and the attachments
# store (MEDIA_ROOT, a tar.gz), into one folder with a manifest.
#
#   DATABASE_URL=postgres://… MEDIA_ROOT=/srv/cxdesk/media deploy/backup.sh /backups/cxdesk-$(date +%F)
#
# Consistency: the dump is one transaction (a snapshot); attachments are content-addressed
# and never rewritten, so copying MEDIA_ROOT after the dump holds every file the dump
# refers to (files added meanwhile are harmless extras). Restore: deploy/restore.sh.
set -euo pipefail
out="${1:?usage: deploy/backup.sh OUT_DIR}"
: "${DATABASE_URL:?DATABASE_URL is not set}"
media="${MEDIA_ROOT:-$(cd "$(dirname "$0")/.." && pwd)/var/media}"
mkdir -p "$out"
pg_dump --format=custom --no-owner --no-privileges --file="$out/db.dump" "$DATABASE_URL"
if [ -d "$media" ]; then
  tar -C "$media" -czf "$out/media.tar.gz" .
else
  tar -czf "$out/media.tar.gz" --files-from /dev/null
fi
{
  echo "created_at=$(date -u +%FT%TZ)"
  echo "db_sha256=$(sha256sum "$out/db.dump" | cut -d' ' -f1)"
  echo "media_sha256=$(sha256sum "$out/media.tar.gz" | cut -d' ' -f1)"
  echo "media_files=$(tar -tzf "$out/media.tar.gz" | grep -vc '/$' || true)"
} > "$out/MANIFEST"
echo "backup: $out (db.dump, media.tar.gz, MANIFEST)"
