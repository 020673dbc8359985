from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("notes", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="note",
            name="nickname",
            field=models.CharField(blank=True, max_length=100, null=True),
        ),
    ]
