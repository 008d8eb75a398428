"""rsee_ros: adaptive resolution selection and early exiting for action recognition on ROS 2.

The generated message modules (``rsee_ros.msg``) are installed by the CMake build, which may put
them in another ``rsee_ros`` directory on ``sys.path`` (the venv's site-packages); extending
``__path__`` lets both halves import as one package.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
