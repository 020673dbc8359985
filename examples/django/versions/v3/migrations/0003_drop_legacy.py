from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("notes", "0002_add_nickname"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="note",
            name="legacy_flag",
        ),
    ]
