"""The serving core on Ray Serve: one model repository, replicas across a cluster
(docs/scale-out.md).

The application hosts the same protocol core, ASGI app and gRPC servicer as ``popef serve``
(:mod:`popef.serving.ray.deployment`), so stock ``tritonclient`` clients talk to Ray's HTTP
and gRPC proxies unchanged. Start it with ``popef serve --ray``, or with Ray's own CLI::

    serve run popef.serving.ray:app model_repository=/models

(the gRPC proxy then needs ``--grpc-servicer-functions`` or a config file, see the docs).
Replicas come from the models' ``instance_group`` counts, autoscaling from their
``ray_*`` parameters (:mod:`popef.serving.ray.options`).

This package needs the extra ``popef[ray]``; :mod:`.options` alone does not import Ray.
"""

from __future__ import annotations

from collections.abc import Mapping

from .options import APP_NAME, DEPLOYMENT_NAME, INGRESS_NAME, AppOptions, Scaling

__all__ = [
    "APP_NAME",
    "DEPLOYMENT_NAME",
    "GRPC_SERVICER_FUNCTION",
    "INGRESS_NAME",
    "AppOptions",
    "Scaling",
    "app",
    "build_app",
]

#: the import path to give ``gRPCOptions.grpc_servicer_functions`` (or ``serve start
#: --grpc-servicer-functions``)
GRPC_SERVICER_FUNCTION = "popef.serving.ray.grpc_proxy.add_servicer"


def build_app(options: AppOptions, scaling: Scaling | None = None):
    """The Ray Serve application (``serve.run(build_app(...))``) serving ``options``'
    repositories, scaled as ``scaling`` says (default: :meth:`AppOptions.scaling`)."""
    from .deployment import deployment, direct_deployment, ingress
    from .options import ingress_options

    scaling = scaling or options.scaling()
    if not options.retry_lost_requests:  # Ray's proxies call the replicas themselves
        return direct_deployment.options(**scaling.deployment_options()).bind(options)
    server = deployment.options(**scaling.deployment_options()).bind(options)
    return ingress.options(**ingress_options()).bind(server, options.http_max_input_size)


def app(args: Mapping[str, object]):
    """The application builder for ``serve run popef.serving.ray:app model_repository=DIR``
    and ``serve deploy`` configs (``import_path: popef.serving.ray:app`` with ``args``).

    ``args`` are :class:`AppOptions` fields: ``model_repository`` (folders separated by ','),
    ``executor``, ``num_replicas``, ``min_replicas``, ``max_replicas``,
    ``target_ongoing_requests``, ``num_cpus``, ``retry_lost_requests`` (default true: the
    retrying ingress; false: Ray's proxies call the replicas, one hop less), ...
    """
    return build_app(AppOptions.from_args(args))
