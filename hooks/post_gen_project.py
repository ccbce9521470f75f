"""Drop unselected optional files, keep the answers, print next steps."""

import json
import shutil
from pathlib import Path

# jsonify inside a raw string keeps this file valid Python before rendering too.
CONTEXT = json.loads(r"""{{ cookiecutter | jsonify }}""")

if CONTEXT["license"] == "none":
    Path("LICENSE").unlink()
if CONTEXT["github_actions"] == "no":
    shutil.rmtree(".github")

# Private keys (_template, _output_dir, ...) describe this machine, not the answers.
# The answers under "cookiecutter" make the file a replay file: `cookiecutter
# --replay-file .cookiecutter.json <template>` regenerates the project with them.
answers = {key: value for key, value in CONTEXT.items() if not key.startswith("_")}
Path(".cookiecutter.json").write_text(json.dumps({"cookiecutter": answers}, indent=2) + "\n")

slug = CONTEXT["project_slug"]
print(f"""
Created {slug}/. Next steps:
    cd {slug} && make train
    make help
""")
