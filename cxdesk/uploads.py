"""Uploads: streamed to disk, capped per file, read only when within the limit.

`AttachmentLimitUploadHandler` sits first in FILE_UPLOAD_HANDLERS. It counts each file's
bytes as they stream in and, past CXDESK_MAX_ATTACHMENT_BYTES, drops the file (the partial
temporary file is deleted; the rest of it is read and thrown away, never kept) and notes it
on the request. `uploaded_files()` is what views call: it turns such a note into an
ApplicationError (413) with a message for the person, and reads only files within the limit.
Files past FILE_UPLOAD_MAX_MEMORY_SIZE go to a temporary file, never to memory.
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _

from cxdesk.errors import ApplicationError


class AttachmentLimitUploadHandler(FileUploadHandler):
    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > settings.CXDESK_MAX_ATTACHMENT_BYTES:
            if self.request is not None:
                if not hasattr(self.request, "upload_rejected"):
                    self.request.upload_rejected = []
                self.request.upload_rejected.append(self.file_name or "")
            raise SkipFile
        return raw_data  # on to the next handler (memory for small files, a temp file for big)

    def file_complete(self, file_size: int) -> None:
        return None


def uploaded_files(request: HttpRequest, field: str = "attachments") -> list[tuple[str, bytes, str]]:
    files = request.FILES.getlist(field)
    rejected = getattr(request, "upload_rejected", [])
    if rejected:
        raise ApplicationError(
            _("The file “%(name)s” is too large: files may be at most %(limit)s.")
            % {"name": rejected[0], "limit": filesizeformat(settings.CXDESK_MAX_ATTACHMENT_BYTES)},
            code="attachment_too_large",
            fields={field: ["too large"]},
            status=413,
        )
    out = []
    for f in files:
        if f.size is not None and f.size > settings.CXDESK_MAX_ATTACHMENT_BYTES:  # handler not installed
            raise ApplicationError(
                _("The file “%(name)s” is too large.") % {"name": f.name}, code="attachment_too_large", status=413
            )
        out.append((f.name, f.read(), f.content_type or ""))
    return out
