#include "processors/vision.h"

#include <algorithm>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/objdetect.hpp>

namespace courtyard::processors {

struct FaceDetector::Impl {
  VisionConfig config;
  mutable cv::CascadeClassifier faces;

  std::expected<cv::Mat, std::string> decode(std::string_view image) const {
    if (image.empty()) return std::unexpected(std::string("the image is empty"));
    if (image.size() > config.max_image_bytes) {
      return std::unexpected("the image is " + std::to_string(image.size()) + " bytes, more than " +
                             std::to_string(config.max_image_bytes));
    }
    const cv::Mat bytes(1, static_cast<int>(image.size()), CV_8UC1, const_cast<char*>(image.data()));
    cv::Mat decoded;
    try {
      decoded = cv::imdecode(bytes, cv::IMREAD_COLOR);
    } catch (const cv::Exception& e) {
      return std::unexpected(std::string("not a decodable image: ") + e.what());
    }
    if (decoded.empty()) return std::unexpected(std::string("not a decodable image (JPEG or PNG expected)"));
    if (decoded.cols > config.max_side_px || decoded.rows > config.max_side_px) {
      return std::unexpected("the image is " + std::to_string(decoded.cols) + "x" + std::to_string(decoded.rows) +
                             ", larger than " + std::to_string(config.max_side_px) + " on a side");
    }
    return decoded;
  }
};

FaceDetector::FaceDetector() : impl_(std::make_unique<Impl>()) {}
FaceDetector::~FaceDetector() = default;

std::expected<std::unique_ptr<FaceDetector>, std::string> FaceDetector::open(const VisionConfig& config) {
  std::unique_ptr<FaceDetector> d(new FaceDetector());
  d->impl_->config = config;
  if (!d->impl_->faces.load(config.face_model)) return std::unexpected("cannot load the face model " + config.face_model);
  return d;
}

std::expected<ImageScan, std::string> FaceDetector::scan(std::string_view image) const {
  auto decoded = impl_->decode(image);
  if (!decoded) return std::unexpected(decoded.error());
  cv::Mat gray;
  cv::cvtColor(*decoded, gray, cv::COLOR_BGR2GRAY);
  cv::equalizeHist(gray, gray);
  std::vector<cv::Rect> found;
  const auto& c = impl_->config;
  impl_->faces.detectMultiScale(gray, found, c.scale_step, c.min_neighbors, 0, cv::Size(c.min_face_px, c.min_face_px));
  ImageScan out{decoded->cols, decoded->rows, {}};
  for (const auto& r : found) out.faces.push_back({r.x, r.y, r.width, r.height});
  std::sort(out.faces.begin(), out.faces.end(), [](const Box& a, const Box& b) { return a.x < b.x; });
  return out;
}

std::expected<std::string, std::string> FaceDetector::blur_faces(std::string_view image, const std::vector<Box>& faces) const {
  auto decoded = impl_->decode(image);
  if (!decoded) return std::unexpected(decoded.error());
  cv::Mat& img = *decoded;
  const cv::Rect whole(0, 0, img.cols, img.rows);
  for (const auto& f : faces) {
    // The whole head: half the face's size around it (hair line, chin and ears identify people too,
    // and a blurred face inside an intact head still reads as a face at a coarser scale).
    const int mx = f.width / 2, my = f.height / 2;
    const cv::Rect area = cv::Rect(f.x - mx, f.y - my, f.width + 2 * mx, f.height + 2 * my) & whole;
    if (area.empty()) continue;
    cv::Mat region = img(area);
    cv::Mat cells;
    const int n = std::max(1, impl_->config.blur_cells);
    cv::resize(region, cells, cv::Size(n, n), 0, 0, cv::INTER_AREA);
    cv::resize(cells, region, region.size(), 0, 0, cv::INTER_NEAREST);
    cv::GaussianBlur(region, region, cv::Size(0, 0), std::max(2.0, area.width / 12.0));
  }
  std::vector<unsigned char> jpeg;
  if (!cv::imencode(".jpg", img, jpeg, {cv::IMWRITE_JPEG_QUALITY, 85})) {
    return std::unexpected(std::string("cannot encode the blurred image"));
  }
  return std::string(jpeg.begin(), jpeg.end());
}

}  // namespace courtyard::processors
