from pydantic import BaseModel

from taskconsole import registry


class TotalArguments(BaseModel):
    a: int
    b: int


registry.register("orders.tasks.total", schema=TotalArguments, label="Order total")
