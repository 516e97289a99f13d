"""volimg: upload a Cinder volume to Glance and place the image where its base image lives."""

__version__ = "0.1.0"
