#!/usr/bin/env bash
# Restore a deploy/backup.sh folder into an EMPTY database and media folder.
#
#   createdb cxdesk_restored
#   DATABASE_URL=postgres://…/cxdesk_restored MEDIA_ROOT=/srv/cxdesk/media deploy/restore.sh /backups/cxdesk-2026-11-26
#
# Checks the manifest's checksums first; stops the app's writers before restoring over a
# live system (or restore beside it and switch DATABASE_URL/MEDIA_ROOT).
set -euo pipefail
in="${1:?usage: deploy/restore.sh BACKUP_DIR}"
: "${DATABASE_URL:?DATABASE_URL is not set}"
: "${MEDIA_ROOT:?MEDIA_ROOT is not set}"
check() {
  want=$(grep "^$1=" "$in/MANIFEST" | cut -d= -f2)
  got=$(sha256sum "$in/$2" | cut -d' ' -f1)
  [ "$want" = "$got" ] || { echo "restore: $2 does not match its checksum in MANIFEST" >&2; exit 1; }
}
check db_sha256 db.dump
check media_sha256 media.tar.gz
pg_restore --no-owner --no-privileges --exit-on-error --single-transaction --dbname="$DATABASE_URL" "$in/db.dump"
mkdir -p "$MEDIA_ROOT"
tar -C "$MEDIA_ROOT" -xzf "$in/media.tar.gz"
echo "restore: database and $(grep '^media_files=' "$in/MANIFEST" | cut -d= -f2) media file(s) restored"
