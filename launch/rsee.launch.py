"""Launch rsee_node (RSEE action recognition) with a parameter file.

    ros2 launch rsee_ros rsee.launch.py
    ros2 launch rsee_ros rsee.launch.py image_topics:="[/cam0/image_raw, /cam1/compressed]"
    ros2 launch rsee_ros rsee.launch.py params_file:=my_rsee.yaml checkpoint:=/models/m.pt \
        device:=cuda namespace:=robot1

Arguments (``ros2 launch rsee_ros rsee.launch.py --show-args``):
  image_topics  camera topics, "[/a, /b]" or "/a,/b"; empty: the parameter file's
  params_file   ROS 2 parameter file (default: the installed config/rsee.yaml)
  checkpoint    model checkpoint; empty: the parameter file's (default: the packaged model)
  device        auto, cpu or cuda; empty: the parameter file's
  namespace     namespace of the node (topics become /<namespace>/rsee_node/...)
  log_level     debug, info, warn, error
image_topics, checkpoint and device given here override the parameter file.
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.launch_context import LaunchContext
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def _topics(text: str) -> list[str]:
    """ "[/a, /b]", "['/a', '/b']" or "/a,/b" -> ["/a", "/b"]."""
    inner = text.strip().removeprefix("[").removesuffix("]")
    return [t.strip().strip("'\"") for t in inner.split(",") if t.strip().strip("'\"")]


def _rsee_node(context: LaunchContext) -> list[Node]:
    overrides: dict[str, object] = {}
    topics = _topics(LaunchConfiguration("image_topics").perform(context))
    if topics:
        overrides["image_topics"] = topics
    for name in ("checkpoint", "device"):
        value = LaunchConfiguration(name).perform(context).strip()
        if value:
            overrides[name] = value
    parameters: list[object] = [LaunchConfiguration("params_file")]
    if overrides:
        parameters.append(overrides)
    return [
        Node(
            package="rsee_ros",
            executable="rsee_node",
            name="rsee_node",
            namespace=LaunchConfiguration("namespace"),
            parameters=parameters,
            ros_arguments=["--log-level", LaunchConfiguration("log_level")],
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description() -> LaunchDescription:
    default_params = PathJoinSubstitution([FindPackageShare("rsee_ros"), "config", "rsee.yaml"])
    return LaunchDescription([
        DeclareLaunchArgument(
            "image_topics", default_value="",
            description='Camera topics, "[/a, /b]" or "/a,/b" (topics ending in /compressed are '
            "CompressedImage); empty: from the parameter file",
        ),
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="ROS 2 parameter file of rsee_node"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="Model checkpoint; empty: from the parameter file"),
        DeclareLaunchArgument("device", default_value="",
                              description="auto, cpu or cuda; empty: from the parameter file"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node"),
        DeclareLaunchArgument("log_level", default_value="info",
                              description="debug, info, warn or error"),
        OpaqueFunction(function=_rsee_node),
    ])
