from celery import shared_task


@shared_task
def total(a: int, b: int) -> int:
    return a + b
