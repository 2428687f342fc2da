"""The upload page, a batch's page, its JSON status (which the page polls) and thumbnails."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import filesizeformat
from django.utils.translation import get_language, ngettext
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from operations.text import listed

from . import services
from .forms import PRODUCT_COLUMNS, RejectedFile, UploadForm
from .models import ImportBatch, ImportFile
from .uploadhandlers import SizeLimitUploadHandler
from .validators import IMAGE_FORMATS, accepted_extensions

ROW_ERRORS_SHOWN = 20
UPLOAD_PERMISSION = "imports.add_importbatch"


def _visible_batches(request: HttpRequest) -> QuerySet[ImportBatch]:
    batches = ImportBatch.objects.all()
    if not request.user.has_perm("imports.view_importbatch"):
        batches = batches.filter(created_by=request.user)
    return batches


def _index_context(form: UploadForm) -> dict[str, object]:
    return {
        "form": form,
        "columns": PRODUCT_COLUMNS,
        "extensions": listed(accepted_extensions()),
        "image_formats": listed(IMAGE_FORMATS),
        "max_size": settings.IMPORTS_MAX_FILE_SIZE,
        "max_files": settings.DATA_UPLOAD_MAX_NUMBER_FILES,
        "thumbnail_size": settings.IMPORTS_THUMBNAIL_SIZE,
    }


@require_GET
@login_required
@permission_required(UPLOAD_PERMISSION, raise_exception=True)
def index(request: HttpRequest) -> HttpResponse:
    context = _index_context(UploadForm())
    context["batches"] = ImportBatch.objects.filter(created_by=request.user)[:20]
    return render(request, "imports/index.html", context)


# Upload handlers can only be changed before the body is read, and the CSRF check reads it: so
# the check is made in _upload, once the size-limit handler is in place (the pattern Django's
# upload handler documentation gives).
@csrf_exempt
@require_POST
@login_required
@permission_required(UPLOAD_PERMISSION, raise_exception=True)
def upload(request: HttpRequest) -> HttpResponse:
    handler = SizeLimitUploadHandler(request, settings.IMPORTS_MAX_FILE_SIZE)
    request.upload_handlers.insert(0, handler)
    return _upload(request, handler)


@csrf_protect
def _upload(request: HttpRequest, handler: SizeLimitUploadHandler) -> HttpResponse:
    limit = filesizeformat(settings.IMPORTS_MAX_FILE_SIZE)
    files = request.FILES  # parses the body, so the handler knows what it dropped
    too_large = [
        RejectedFile(name, _("it is over the limit of %(limit)s.") % {"limit": limit})
        for name in handler.too_large
    ]
    form = UploadForm(request.POST, files, rejected=too_large)
    valid = form.is_valid()
    for rejected in form.rejected:
        messages.error(
            request,
            _("“%(name)s” was not accepted: %(reason)s")
            % {"name": rejected.name, "reason": rejected.reason},
        )
    if not valid:
        context = _index_context(form)
        context["batches"] = ImportBatch.objects.filter(created_by=request.user)[:20]
        return render(request, "imports/index.html", context, status=400)
    batch = services.create_batch(request.user, form.accepted, language=get_language() or "")
    # The commit has run dispatch_files by now; it marks the files the broker did not take.
    not_queued = services.count_not_queued(batch)
    queued = len(form.accepted) - not_queued
    if queued:
        messages.success(
            request,
            ngettext(
                "%(count)d file stored and queued for processing.",
                "%(count)d files stored and queued for processing.",
                queued,
            )
            % {"count": queued},
        )
    if not_queued:
        messages.warning(
            request,
            ngettext(
                "%(count)d file stored, but not queued for processing yet: the task queue is "
                "unavailable. It is queued automatically once the queue is back.",
                "%(count)d files stored, but not queued for processing yet: the task queue is "
                "unavailable. They are queued automatically once the queue is back.",
                not_queued,
            )
            % {"count": not_queued},
        )
    return redirect("imports:batch", batch_id=batch.pk)


@require_GET
@login_required
def batch_detail(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = get_object_or_404(_visible_batches(request), pk=batch_id)
    status = services.batch_status(batch)
    files = {f.pk: f for f in batch.files.all()}
    for entry in status["files"]:
        import_file: ImportFile = files[entry["id"]]
        entry["row_errors"] = list(import_file.row_errors.all()[:ROW_ERRORS_SHOWN])
    return render(
        request,
        "imports/batch.html",
        {"batch": batch, "status": status, "row_errors_shown": ROW_ERRORS_SHOWN},
    )


@require_GET
@login_required
def batch_status(request: HttpRequest, batch_id: int) -> JsonResponse:
    batch = get_object_or_404(_visible_batches(request), pk=batch_id)
    return JsonResponse(services.batch_status(batch))


@require_GET
@login_required
def thumbnail(request: HttpRequest, file_id: int) -> FileResponse:
    import_file = get_object_or_404(
        ImportFile.objects.filter(batch__in=_visible_batches(request)), pk=file_id
    )
    if not import_file.thumbnail:
        raise Http404(_("This file has no thumbnail."))
    return FileResponse(import_file.thumbnail.open("rb"))
